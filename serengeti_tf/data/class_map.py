"""class_map.json: label index -> species, the one reader and writer.

    {"num_classes": N, "classes": [{"index": 0, "name": "aardvark", "paper_name": "Aardvark"}, ...]}

`prepare` writes it into the dataset folder; a training run copies it unchanged; `export` ships it
with the model; `evaluate`, `predict` and `report` read the names back in label-index order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

from serengeti_tf import run_folder
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import read_json, write_text
from serengeti_tf.species import paper_name

FILE_NAME = run_folder.CLASS_MAP


def check_entries(path, pairs: list, num_classes: Any) -> None:
    """Refuses a class map whose indices are not exactly 0..N-1 (ints, each once), whose names are not
    distinct non-empty strings, or whose `num_classes` (when given) is not N."""
    indices = [i for i, _ in pairs]
    names = [n for _, n in pairs]
    if not pairs or any(isinstance(i, bool) or not isinstance(i, int) for i in indices) \
            or sorted(indices) != list(range(len(pairs))):
        raise UserError(f"{path}: class indices must be 0..N-1, each once, got {sorted(map(str, indices))[:5]}"
                        f"{'...' if len(indices) > 5 else ''} ({len(pairs)} classes)")
    if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise UserError(f"{path}: class names must be distinct non-empty strings")
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes != len(pairs)):
        raise UserError(f"{path}: num_classes is {num_classes!r} but {len(pairs)} classes are listed")


def require_same_classes(expected: Sequence[str], expected_from: str, given: Sequence[str], given_from: str) -> None:
    """Refuses class names `given` (e.g. a --classes file or a dataset) that differ from the ones
    a model was trained with (`expected`): every label would be wrong."""
    if list(expected) == list(given):
        return
    first = next((i for i, (a, b) in enumerate(zip(expected, given)) if a != b), min(len(expected), len(given)))
    raise UserError(f"{given_from} has classes that differ from {expected_from} ({len(given)} vs {len(expected)} "
                    f"classes; first difference at index {first}: "
                    f"{given[first] if first < len(given) else '-'!r} vs "
                    f"{expected[first] if first < len(expected) else '-'!r}); labels would be wrong: use the "
                    f"class map the model was trained with")


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """A class map as stored; `content` is the file's JSON object, written back unchanged."""

    content: dict

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "ClassMap":
        """The class map `prepare` writes: index i is the i-th of the (sorted) canonical names."""
        return cls({"num_classes": len(names),
                    "classes": [{"index": i, "name": n, "paper_name": paper_name(n)} for i, n in enumerate(names)]})

    @classmethod
    def read(cls, path_or_dir: str | os.PathLike) -> "ClassMap":
        """Reads `class_map.json` (or the one inside a folder); UserError when missing or malformed."""
        path = Path(path_or_dir)
        if path.is_dir():
            path = path / FILE_NAME
        if not path.is_file():
            raise UserError(f"{path} not found")
        content = read_json(path)  # a corrupt file is a one-line CorruptFileError
        try:
            pairs = [(c["index"], c["name"]) for c in content["classes"]]
        except (KeyError, TypeError) as err:
            raise UserError(f"{path} is not a class_map.json (expected {{'classes': [{{'index', 'name'}}]}}): "
                            f"{err}") from None
        check_entries(path, pairs, content.get("num_classes"))
        return cls(content)

    def write(self, path: str | os.PathLike) -> None:
        """Writes `text()` atomically (a folder gets `class_map.json` inside)."""
        path = Path(path)
        write_text(path / FILE_NAME if path.is_dir() else path, self.text())

    def text(self) -> str:
        """The file's text: indented JSON and a final newline (as `io_utils.write_json` writes)."""
        return json.dumps(self.content, indent=2, default=str) + "\n"

    def compact_json(self) -> str:
        """One-line JSON of the content (embedded in TFLite metadata)."""
        return json.dumps(self.content)

    def labels_text(self) -> str:
        """labels.txt: one class name per line in label-index order."""
        return "".join(name + "\n" for name in self.names)

    @property
    def classes(self) -> list[dict[str, Any]]:
        """The class entries in label-index order."""
        return sorted(self.content.get("classes", []), key=lambda c: c["index"])

    @property
    def names(self) -> list[str]:
        """Class names in label-index order."""
        return [c["name"] for c in self.classes]

    @property
    def num_classes(self) -> Any:
        """`num_classes` as stored (None when the file has none)."""
        return self.content.get("num_classes")

    def same_classes(self, other: "ClassMap") -> bool:
        """Equal label-index -> name mapping (paper display names may differ)."""
        def pairs(m: ClassMap) -> list:
            return [(c["index"], c["name"]) for c in m.classes]

        return pairs(self) == pairs(other)

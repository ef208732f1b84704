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

from serengeti_tf.errors import UserError

FILE_NAME = "class_map.json"


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """A class map as stored; `content` is the file's JSON object, written back unchanged."""

    content: dict

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "ClassMap":
        """The class map `prepare` writes: index i is the i-th of the (sorted) canonical names."""
        from serengeti_tf.species import paper_name

        return cls({"num_classes": len(names),
                    "classes": [{"index": i, "name": n, "paper_name": paper_name(n)} for i, n in enumerate(names)]})

    @classmethod
    def read(cls, path_or_dir: str | os.PathLike) -> "ClassMap":
        """Reads `class_map.json` (or the one inside a folder); UserError when missing or malformed."""
        from serengeti_tf.io_utils import read_json

        path = Path(path_or_dir)
        if path.is_dir():
            path = path / FILE_NAME
        if not path.is_file():
            raise UserError(f"{path} not found")
        content = read_json(path)  # a corrupt file is a one-line CorruptFileError
        try:
            [(c["index"], c["name"]) for c in content["classes"]]
        except (KeyError, TypeError) as err:
            raise UserError(f"{path} is not a class_map.json (expected {{'classes': [{{'index', 'name'}}]}}): "
                            f"{err}") from None
        return cls(content)

    def write(self, path: str | os.PathLike) -> None:
        """Writes `text()` atomically (a folder gets `class_map.json` inside)."""
        from serengeti_tf.io_utils import write_text

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

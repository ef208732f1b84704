"""Reading a training run folder for evaluation, reports and predictions (`runs.py` writes it).

Everything here only reads: the run's lineage, its class names, the prepared dataset it was trained
on, and where its evaluation of a split lives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from serengeti_tf.errors import UserError, setting


def eval_dir_name(split: str) -> str:
    """`eval` for the test split (the paper's numbers), `eval_<split>` otherwise."""
    return "eval" if split == "test" else f"eval_{split}"


def read_lineage(run_dir: str | Path) -> dict:
    """lineage.json of a run ({"phase", "sampler", "dataset_dir", "init_run", "seed", ...})."""
    from serengeti_tf.train.runs import read_run_json

    return read_run_json(run_dir, "lineage.json")


def run_class_names(run_dir: str | Path) -> list[str]:
    """Class names of a run (its class_map.json), in label-index order."""
    from serengeti_tf.train.runs import read_class_map

    return read_class_map(run_dir).names


def resolve_dataset_dir(run_dir: str | Path, lineage: Mapping[str, Any],
                        dataset_dir: Optional[str | Path] = None) -> Path:
    """The prepared dataset a run was trained on: `dataset_dir` if given, else lineage's (absolute,
    relative to the working folder, or relative to the run folder)."""
    if dataset_dir is not None:
        candidates = [Path(dataset_dir)]
    else:
        recorded = lineage.get("dataset_dir")
        if not recorded:
            raise UserError(f"{run_dir}/lineage.json names no dataset_dir; pass {setting('dataset_dir')}")
        candidates = [Path(recorded), Path(run_dir) / recorded]
    for candidate in candidates:
        if (candidate / "class_map.json").is_file():
            return candidate
    source = setting("dataset_dir") if dataset_dir is not None else "lineage.json"
    raise UserError(f"prepared dataset not found at {candidates[0]} (from {source}); pass {setting('dataset_dir')}")

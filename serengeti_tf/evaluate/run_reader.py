"""Reading a training run folder for evaluation, reports and predictions (`runs.py` writes it).

Everything here only reads: the run's lineage, its class names, the prepared dataset it was trained
on, and where its evaluation of a split lives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from serengeti_tf import run_folder
from serengeti_tf.data.class_map import ClassMap
from serengeti_tf.errors import UserError, setting
from serengeti_tf.run_folder import Lineage, eval_dir_name

__all__ = ["eval_dir_name", "read_lineage", "resolve_dataset_dir", "run_class_names"]


def read_lineage(run_dir: str | Path) -> Lineage:
    """lineage.json of a run (a `run_folder.Lineage`: a read-only mapping with typed properties)."""
    return Lineage.read(run_dir)


def run_class_names(run_dir: str | Path) -> list[str]:
    """Class names of a run (its class_map.json), in label-index order."""
    return ClassMap.read(run_folder.require_run_file(run_dir, run_folder.CLASS_MAP)).names


def resolve_dataset_dir(run_dir: str | Path, lineage: Mapping[str, Any],
                        dataset_dir: Optional[str | Path] = None) -> Path:
    """The prepared dataset a run was trained on: `dataset_dir` if given, else lineage's (absolute,
    relative to the working folder, or relative to the run folder)."""
    if dataset_dir is not None:
        candidates = [Path(dataset_dir)]
    else:
        recorded = lineage.get(Lineage.DATASET_DIR)
        if not recorded:
            raise UserError(f"{run_dir}/{run_folder.LINEAGE} names no dataset_dir; pass {setting('dataset_dir')}")
        candidates = [Path(recorded), Path(run_dir) / recorded]
    for candidate in candidates:
        if (candidate / run_folder.CLASS_MAP).is_file():
            return candidate
    source = setting("dataset_dir") if dataset_dir is not None else run_folder.LINEAGE
    raise UserError(f"prepared dataset not found at {candidates[0]} (from {source}); pass {setting('dataset_dir')}")

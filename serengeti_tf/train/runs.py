"""The run folder of `serengeti-tf train`: its fingerprint and claim, and its resume state (names: `run_folder`).

    RUN_DIR/
      fingerprint.json     what this folder holds (config, dataset, init run): guards against overwrites
      config.yaml          fully resolved config (rerun with --config RUN_DIR/config.yaml)
      lineage.json         phase, sampler, dataset dir, init_run (the phase-1 run of a phase-2 run) and
                           init_model_sha256 (its model.keras when phase 2 started), seeds
      class_map.json       copy of the dataset's class map (label index -> species)
      versions.json        python, tensorflow, keras, numpy, ... versions and devices
      metrics.csv          one row per finished epoch: loss, accuracy, val_loss, val_accuracy, val_macro_f1
      tensorboard/         the same scalars for TensorBoard
      checkpoints/         state.json (resume state), epoch-NNN.keras (last finished epoch, with
                           optimizer state), best-epoch-NNN.keras (best val macro F1 so far),
                           state.previous.json + the checkpoints it names (the epoch before: the
                           back-up a corrupt latest checkpoint falls back to),
                           features-*.npz (phase-2 feature cache, stamped with the sha256 of the
                           model that computed them)
      model.keras          final model = the best checkpoint by val macro F1
      timings.json         seconds per epoch, feature pass, total
"""

from __future__ import annotations

import platform
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy
import pandas as pd
import sklearn

import serengeti_tf
from serengeti_tf import config as cfg
from serengeti_tf import events, run_folder
from serengeti_tf.data.class_map import ClassMap
from serengeti_tf.errors import UserError, setting
from serengeti_tf.io_utils import CorruptFileError, read_json, same_json, write_csv, write_json
from serengeti_tf.models.pretrained import describe_source, source_digest
from serengeti_tf.run_folder import Lineage, OutputJob, RunFolder

METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1",
                  "learning_rate", "seconds")
# Settings that change how a run is computed but not what it holds: a rerun may change them.
_NOT_FINGERPRINTED = ("strategy", "xla")
# Config sections that never change what a training run holds: `experiment` describes the grid
# around the run (so a grid can grow without disowning its finished runs); `eval` is used by
# training only for the val batch size, and evaluations fingerprint their own settings.
_NOT_FINGERPRINTED_SECTIONS = ("experiment", "eval", "export", "data")


@dataclass
class RunPaths:
    """Where a run writes (`root`) and, for a non-chief worker, whose state it resumes (`resume_root`)."""

    root: Path
    resume_root: Optional[Path] = None

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.root)

    @property
    def checkpoints(self) -> Path:
        return self.folder.checkpoints

    @property
    def state_file(self) -> Path:
        return RunFolder(self.resume_root or self.root).state

    @property
    def metrics(self) -> Path:
        return self.folder.metrics

    @property
    def model(self) -> Path:
        return self.folder.model

    @property
    def tensorboard(self) -> Path:
        return self.folder.tensorboard


@dataclass
class RunState:
    """Resume state, rewritten atomically after every finished epoch (after its checkpoint)."""

    epochs_done: int = 0
    checkpoint: str = ""  # file name in checkpoints/ of the last finished epoch (model + optimizer)
    best_checkpoint: str = ""  # file name in checkpoints/ of the best epoch's full model
    best_score: Optional[float] = None
    best_epoch: int = 0
    wait: int = 0  # epochs since the best one (early stopping)
    stopped_early: bool = False
    finished: bool = False
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


PREVIOUS_STATE = run_folder.PREVIOUS_STATE


def read_state(paths: RunPaths) -> RunState:
    if not paths.state_file.exists():
        return RunState()
    return RunState(**read_json(paths.state_file))


def _previous_state(paths: RunPaths) -> Optional[RunState]:
    path = paths.state_file.with_name(PREVIOUS_STATE)
    try:
        return RunState(**read_json(path)) if path.is_file() else None
    except UserError:  # corrupt too
        return None


def checkpoint_is_complete(path: Path) -> bool:
    """True when `path` is a whole `.keras` file (a zip whose every member passes its CRC check)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def resume_state(paths: RunPaths, on_event) -> RunState:
    """The state to resume from: state.json, or the back-up state when state.json or the checkpoint it
    names is corrupt (truncated by a crash or a full disk). UserError when neither is usable."""
    root = paths.state_file.parent
    try:
        state = read_state(paths)
    except UserError as err:
        problem = f"{paths.state_file} is corrupt ({err})"
    else:
        if not state.checkpoint or checkpoint_is_complete(root / state.checkpoint):
            return state
        problem = f"checkpoint {root / state.checkpoint} is corrupt (truncated or damaged)"
    previous = _previous_state(paths)
    if previous is None or not previous.checkpoint or not checkpoint_is_complete(root / previous.checkpoint):
        raise UserError(f"{problem} and no earlier complete checkpoint is kept; rerun with {setting('overwrite')} "
                        f"to train this run again")
    on_event(events.Warning(f"{problem}; resuming from the previous complete checkpoint {previous.checkpoint} "
                            f"(epoch {previous.epochs_done})"))
    return previous


def write_state(paths: RunPaths, state: RunState) -> None:
    """Writes state.json; the state it replaces becomes the back-up (state.previous.json)."""
    current = paths.checkpoints / run_folder.STATE
    if current.is_file():
        try:
            previous = read_json(current)
        except UserError:
            previous = None
        if previous is not None and previous.get("checkpoint") != state.checkpoint:
            write_json(paths.checkpoints / PREVIOUS_STATE, previous)
    write_json(current, state.to_dict())


def tidy_checkpoints(paths: RunPaths, state: RunState) -> None:
    """Removes checkpoints neither the state nor its back-up names (left by a kill mid-epoch).

    Hidden files are never touched: they are temporary files of a save in progress (a `.keras`
    temp name matches `*.keras` too), and the lock keeps a second process from making any.
    """
    previous = _previous_state(paths)
    keep = {state.checkpoint, state.best_checkpoint}
    if previous is not None:
        keep |= {previous.checkpoint, previous.best_checkpoint}
    for path in paths.checkpoints.glob("*.keras"):
        if path.name not in keep and not path.name.startswith("."):
            path.unlink(missing_ok=True)


def write_metrics(paths: RunPaths, history: list[dict]) -> None:
    """metrics.csv from the state's history, so it always has exactly one row per finished epoch."""
    frame = pd.DataFrame(history, columns=list(METRIC_COLUMNS))
    write_csv(paths.metrics, frame)


def fingerprint(config: cfg.Config, dataset_dir: str | Path, init_run: str | Path | None) -> dict:
    """What a run folder holds: resolved config (minus execution-only settings), data, init run."""
    settings = _run_settings(cfg.to_dict(config))
    init_weights = settings.get("train", {}).get("init_weights")
    if init_weights:  # the weights themselves, not the path string: a replaced preset is another run
        settings["train"]["init_weights"] = {"path": str(Path(init_weights).resolve()),
                                             "sha256": source_digest(describe_source(init_weights)["files"])}
    return {"kind": "serengeti-tf train run", "config": settings,
            "dataset_dir": str(Path(dataset_dir).resolve()),
            "init_run": str(Path(init_run).resolve()) if init_run else None}


def _run_settings(settings: dict) -> dict:
    """The config sections and keys that make a run what it is (see `_NOT_FINGERPRINTED*`)."""
    settings = {k: dict(v) for k, v in settings.items() if k not in _NOT_FINGERPRINTED_SECTIONS}
    for key in _NOT_FINGERPRINTED:
        settings.get("train", {}).pop(key, None)
    return settings


def _upgrade_fingerprint(run_dir: Path, fp: dict) -> None:
    """A run written before `experiment`/`eval` left the fingerprint holds them; when it matches
    otherwise, its fingerprint.json is rewritten so the finished run is recognised, not refused."""
    marker = RunFolder(run_dir).fingerprint
    if not marker.is_file():
        return
    try:
        existing = read_json(marker)
    except CorruptFileError:
        return
    if not isinstance(existing.get("config"), dict):
        return
    if not set(existing["config"]) & set(_NOT_FINGERPRINTED_SECTIONS):
        return
    upgraded = {**existing, "config": _run_settings(existing["config"])}
    if same_json(upgraded, fp):
        write_json(marker, fp)


def claim_run_dir(run_dir: str | Path, on_event, config: cfg.Config, dataset_dir, init_run,
                  overwrite: bool) -> bool:
    """Claims `run_dir` for this run; True when it already holds this run (resume or done).

    A folder holding another run (or unrelated files) is refused unless `overwrite`; with
    `overwrite` even the same run starts again from scratch.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run dir {run_dir} exists and is not a folder")
    fp = fingerprint(config, dataset_dir, init_run)
    _upgrade_fingerprint(run_dir, fp)
    job = run_job(run_dir)
    same = job.claim(fp, overwrite=overwrite)
    if same and overwrite:
        on_event(events.Step(f"{setting('overwrite')}: discarding the existing run in {run_dir}"))
        job.restart(fp)
        same = False
    return same


def run_job(run_dir: str | Path, inputs: Optional[dict] = None) -> OutputJob:
    """The output job of a training run folder; `inputs` (name -> path) may not overlap it."""
    return OutputJob(Path(run_dir), "run", inputs=inputs or {}, what="run folder")


def default_run_dir(config: cfg.Config, init_run: str | Path | None = None, root: str | Path = "runs") -> Path:
    """`runs/<sampler>-phase<k>-seed<s>`; a phase-2 run is named after its phase-1 run's sampler."""
    sampler = config.sampler.name
    if config.train.phase == 2 and init_run:
        lineage = RunFolder(init_run).lineage
        if lineage.exists():
            sampler = read_json(lineage).get(Lineage.SAMPLER, sampler)
    return Path(root) / f"{sampler}-phase{config.train.phase}-seed{config.train.seed}"


def versions() -> dict[str, Any]:
    """Software versions and devices, for `versions.json`."""
    import keras
    import tensorflow as tf

    return {
        "python": sys.version.split()[0],
        "serengeti_tf": serengeti_tf.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "scikit_learn": sklearn.__version__,
        "platform": platform.platform(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
    }


def write_run_files(paths: RunPaths, config: cfg.Config, lineage: dict, class_map) -> None:
    """The descriptive files of a run: config, lineage, class map (a `ClassMap`), versions."""
    cfg.save_config(config, paths.root)
    Lineage(lineage).write(paths.root)
    class_map.write(paths.folder.class_map)
    write_json(paths.folder.versions, versions())


def check_init_model_unchanged(run_dir: str | Path, init_run: Path, init_digest: str, overwrite: bool) -> None:
    """Refuses to resume or skip a phase-2 run whose phase-1 model.keras changed since it started.

    Its head (and cached features) came from the old backbone, so its results describe a model that
    no longer exists; retraining it in place would silently replace the only copy. An error names
    both digests; `--overwrite` retrains phase 2 from the new phase-1 model. A run folder written
    before digests were recorded is not checked.
    """
    lineage_path = RunFolder(run_dir).lineage
    if overwrite or not lineage_path.is_file():
        return
    try:
        lineage = Lineage(read_json(lineage_path))
    except CorruptFileError:
        return  # claim_run_dir / the fingerprint decide what to do with a damaged folder
    recorded = lineage.init_model_sha256
    if lineage.get(Lineage.INIT_RUN) != str(init_run.resolve()) or not recorded or recorded == init_digest:
        return
    raise UserError(f"{run_dir} is a phase-2 run of {init_run}/{run_folder.MODEL} with sha256 {recorded[:12]}..., "
                    f"but that file now has sha256 {init_digest[:12]}... (phase 1 was retrained in place); pass "
                    f"{setting('overwrite')} to retrain phase 2 from the new model, or use another run folder")


# A run's JSON files are read by the one reader in `run_folder` (models/ and evaluate/ use it too).
read_run_json = run_folder.read_run_json


def read_class_map(run_dir: str | Path):
    """The run's class_map.json as a `ClassMap`."""
    return ClassMap.read(run_folder.require_run_file(run_dir, run_folder.CLASS_MAP))

"""Every output serengeti-tf writes: the names of its artefacts, the run's lineage, and the job sequence.

One place says what each kind of output holds, so no other module spells an artefact's file name:

    run folder (train)        RunFolder: config.yaml, lineage.json, class_map.json, versions.json,
                              metrics.csv, tensorboard/, checkpoints/ (state.json, ...), model.keras,
                              timings.json, rebalancing.json, eval[_<split>]/
    prepared dataset          DatasetFolder: config.yaml, class_map.json, counts.csv, manifest.csv,
                              crops.csv, splits.csv, shards.json, class_distribution.png, summary.json
    evaluation folder         EvalFolder: config.yaml, metrics.json (last), per_class.csv, ...
    predict outputs           PredictOutputs: OUT.csv and its .skipped.csv, .captures.csv, .config.yaml,
                              .meta.json, and the hidden work files of an interrupted run
    export folder             ExportFolder: model.keras / saved_model/ / *.tflite, class_map.json,
                              labels.txt, export_report.json/.md, config.yaml, fingerprint.json (last)
    experiment folder         ExperimentFolder: config.yaml, runs/seed<s>/..., runs.csv, report/

Every claimed folder also holds `fingerprint.json` (what it holds) and the list of files
serengeti-tf wrote (`io_utils`). `OutputJob` is the sequence every command with an output follows:
refuse an output that overlaps an input -> lock it -> compare the fingerprint with an existing one
(refuse, resume or start afresh) -> (optionally) stage into a temporary folder -> write -> mark
finished with the file written last. Base module: no TensorFlow, no import of data/models/train/evaluate.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from serengeti_tf import io_utils
from serengeti_tf.errors import UserError
from serengeti_tf.locks import output_lock

# ---------------------------------------------------------------------------------------------
# Artefact names shared by several kinds of folder
# ---------------------------------------------------------------------------------------------

CONFIG = "config.yaml"  # resolved config of the command that wrote the folder (`config.save_config`)
CLASS_MAP = "class_map.json"  # label index -> species (`data.class_map.ClassMap`)
FINGERPRINT = io_utils.MARKER  # what a claimed folder holds (`io_utils.claim_output_dir`)
MODEL = "model.keras"  # a run's final model; an export's Keras artefact

# Run folder
LINEAGE = "lineage.json"
VERSIONS = "versions.json"
METRICS_CSV = "metrics.csv"
TIMINGS = "timings.json"
REBALANCING = "rebalancing.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
STATE = "state.json"  # in checkpoints/: resume state
PREVIOUS_STATE = "state.previous.json"  # in checkpoints/: the state before, a corrupt state's back-up

# Prepared dataset
COUNTS = "counts.csv"
MANIFEST = "manifest.csv"
CROPS = "crops.csv"
SPLITS = "splits.csv"
SHARD_INDEX = "shards.json"
CLASS_DISTRIBUTION = "class_distribution.png"
SUMMARY = "summary.json"  # written last: its presence marks a finished prepare

# Evaluation folder
EVAL_METRICS = "metrics.json"  # written last: its presence marks a finished evaluation
PER_CLASS = "per_class.csv"
CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS = "predictions.csv"
CAPTURES = "captures.csv"
GROUPS = "groups.csv"
LEVELS = "levels.csv"  # crop / image / capture scores (`evaluate/levels.py`)
IMAGE_PREDICTIONS = "image_predictions.csv"  # crop runs: the crops' scores pooled per image

# Export folder
SAVED_MODEL = "saved_model"
LABELS = "labels.txt"
EXPORT_REPORT = "export_report.json"
EXPORT_REPORT_MD = "export_report.md"

# Plan folder
PLAN_CSV = "plan.csv"
PLAN_TOTALS = "totals.json"
PLAN_PNG = "plan.png"

# Experiment folder
RUNS = "runs"
RUNS_CSV = "runs.csv"
REPORT = "report"


def eval_dir_name(split: str) -> str:
    """`eval` for the test split (the paper's numbers), `eval_<split>` otherwise."""
    return "eval" if split == "test" else f"eval_{split}"


# ---------------------------------------------------------------------------------------------
# Folder kinds: typed paths
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Folder:
    """A folder of one kind: `root` (any path-like, kept as a Path) and, in subclasses, its files by name."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))


@dataclass(frozen=True)
class RunFolder(_Folder):
    """A training run folder (`serengeti-tf train`); `train/runs.py` writes its resume state."""

    config = property(lambda self: self.root / CONFIG)
    lineage = property(lambda self: self.root / LINEAGE)
    class_map = property(lambda self: self.root / CLASS_MAP)
    versions = property(lambda self: self.root / VERSIONS)
    metrics = property(lambda self: self.root / METRICS_CSV)
    model = property(lambda self: self.root / MODEL)
    timings = property(lambda self: self.root / TIMINGS)
    rebalancing = property(lambda self: self.root / REBALANCING)
    checkpoints = property(lambda self: self.root / CHECKPOINTS)
    tensorboard = property(lambda self: self.root / TENSORBOARD)
    state = property(lambda self: self.root / CHECKPOINTS / STATE)
    fingerprint = property(lambda self: self.root / FINGERPRINT)

    def eval_dir(self, split: str) -> "EvalFolder":
        """Where the run's evaluation of `split` lives."""
        return EvalFolder(self.root / eval_dir_name(split))

    def require(self, name: str) -> Path:
        """The run's file `name`; UserError when it is missing (the run is not finished)."""
        return require_run_file(self.root, name)


def require_run_file(run_dir: str | os.PathLike, name: str) -> Path:
    """`run_dir/name`; UserError when it is missing (the run is not finished). Messages name
    `run_dir` as given."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise UserError(f"{run_dir} is not a finished training run: {name} missing")
    return path


def read_run_json(run_dir: str | os.PathLike, name: str) -> Any:
    """A JSON file of a run (missing: "not a finished training run"; corrupt: a one-line CorruptFileError)."""
    return io_utils.read_json(require_run_file(run_dir, name))


@dataclass(frozen=True)
class DatasetFolder(_Folder):
    """A prepared dataset folder (`serengeti-tf prepare`; its shards are named by `data/shards.py`)."""

    config = property(lambda self: self.root / CONFIG)
    class_map = property(lambda self: self.root / CLASS_MAP)
    counts = property(lambda self: self.root / COUNTS)
    manifest = property(lambda self: self.root / MANIFEST)
    crops = property(lambda self: self.root / CROPS)
    splits = property(lambda self: self.root / SPLITS)
    shard_index = property(lambda self: self.root / SHARD_INDEX)
    class_distribution = property(lambda self: self.root / CLASS_DISTRIBUTION)
    summary = property(lambda self: self.root / SUMMARY)
    fingerprint = property(lambda self: self.root / FINGERPRINT)


@dataclass(frozen=True)
class EvalFolder(_Folder):
    """A run's evaluation of one split (`RUN/eval[_<split>]/`); `metrics.json` is written last."""

    config = property(lambda self: self.root / CONFIG)
    metrics = property(lambda self: self.root / EVAL_METRICS)
    per_class = property(lambda self: self.root / PER_CLASS)
    confusion_csv = property(lambda self: self.root / CONFUSION_CSV)
    confusion_png = property(lambda self: self.root / CONFUSION_PNG)
    predictions = property(lambda self: self.root / PREDICTIONS)
    captures = property(lambda self: self.root / CAPTURES)
    groups = property(lambda self: self.root / GROUPS)
    levels = property(lambda self: self.root / LEVELS)
    image_predictions = property(lambda self: self.root / IMAGE_PREDICTIONS)


@dataclass(frozen=True)
class ExportFolder(_Folder):
    """An export folder (`serengeti-tf export`); it is staged whole and its fingerprint written last."""

    model = property(lambda self: self.root / MODEL)
    saved_model = property(lambda self: self.root / SAVED_MODEL)
    class_map = property(lambda self: self.root / CLASS_MAP)
    labels = property(lambda self: self.root / LABELS)
    report = property(lambda self: self.root / EXPORT_REPORT)
    report_markdown = property(lambda self: self.root / EXPORT_REPORT_MD)
    config = property(lambda self: self.root / CONFIG)
    fingerprint = property(lambda self: self.root / FINGERPRINT)


@dataclass(frozen=True)
class PlanFolder(_Folder):
    """A sampling-plan folder (`serengeti-tf plan`): the per-class targets, their totals and the figure."""

    config = property(lambda self: self.root / CONFIG)
    plan = property(lambda self: self.root / PLAN_CSV)
    totals = property(lambda self: self.root / PLAN_TOTALS)
    figure = property(lambda self: self.root / PLAN_PNG)


@dataclass(frozen=True)
class ExperimentFolder(_Folder):
    """An experiment folder (`serengeti-tf experiment`): one run folder per planned run, the table, the report."""

    config = property(lambda self: self.root / CONFIG)
    runs = property(lambda self: self.root / RUNS)
    runs_csv = property(lambda self: self.root / RUNS_CSV)
    report = property(lambda self: self.root / REPORT)

    def seed_dir(self, seed: int) -> Path:
        """The folder holding seed `seed`'s runs."""
        return self.runs / f"seed{seed}"


@dataclass(frozen=True)
class PredictOutputs:
    """The files `predict` writes for `OUT.csv`, and the hidden work files of an interrupted run."""

    predictions: Path

    def __post_init__(self) -> None:
        out = Path(self.predictions)
        if out.suffix.lower() != ".csv":
            raise UserError(f"output must be a .csv file, got {out}")
        object.__setattr__(self, "predictions", out)

    stem = property(lambda self: self.predictions.with_suffix(""))
    skipped = property(lambda self: Path(f"{self.stem}.skipped.csv"))
    captures = property(lambda self: Path(f"{self.stem}.captures.csv"))
    config = property(lambda self: Path(f"{self.stem}.config.yaml"))
    meta = property(lambda self: Path(f"{self.stem}.meta.json"))  # written last; holds the fingerprint
    partial = property(lambda self: self.predictions.parent / f".{self.predictions.name}.partial")
    partial_skipped = property(lambda self: self.predictions.parent / f".{self.predictions.name}.skipped.partial")
    partial_meta = property(lambda self: self.predictions.parent / f".{self.predictions.name}.partial.json")
    # predict --detections only: one row per crop, and its work file
    crops = property(lambda self: Path(f"{self.stem}.crops.csv"))
    partial_crops = property(lambda self: self.predictions.parent / f".{self.predictions.name}.crops.partial")

    def as_dict(self) -> dict[str, Path]:
        """By name, in the order predict lists them (`partial*` are work files, never outputs)."""
        return {name: getattr(self, name) for name in ("predictions", "skipped", "captures", "config", "meta",
                                                       "partial", "partial_skipped", "partial_meta")}


# ---------------------------------------------------------------------------------------------
# Lineage: what a run came from (lineage.json)
# ---------------------------------------------------------------------------------------------

class Lineage(Mapping):
    """lineage.json of a run, read-only: typed properties for the keys other modules read, and the
    record itself (a Mapping) for the rest, kept as written so writing it back changes no byte.

    Keys written by training: phase, sampler (a phase-2 run carries its phase-1 run's),
    training_sampler, dataset_dir, init_run, init_model_sha256 (the phase-1 model.keras when phase 2
    started), seed, data_seed, model, input_size, dtype_policy, strategy, replicas, global_batch_size,
    init_run_lineage, and what the phase adds (images_per_epoch, head_trained_on, ...); a head
    re-balancing run branched from another run adds rebalanced_run, rebalanced_model_sha256,
    head_rebalancing, trained_epochs.
    """

    PHASE = "phase"
    SAMPLER = "sampler"
    DATASET_DIR = "dataset_dir"
    INIT_RUN = "init_run"
    INIT_MODEL_SHA256 = "init_model_sha256"
    SEED = "seed"
    INPUT_SIZE = "input_size"
    # The keys an evaluation copies into metrics.json, in that order.
    EVALUATION_KEYS = (PHASE, SAMPLER, SEED, INIT_RUN)

    def __init__(self, record: Mapping[str, Any]):
        if not isinstance(record, Mapping):
            raise UserError(f"{LINEAGE} must hold a JSON object, got {type(record).__name__}")
        self._record = dict(record)

    def __getitem__(self, key: str) -> Any:
        return self._record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record)

    def __len__(self) -> int:
        return len(self._record)

    def __repr__(self) -> str:
        return f"Lineage({self._record!r})"

    @classmethod
    def read(cls, run_dir: str | Path) -> "Lineage":
        """The lineage of the run `run_dir` (missing: "not a finished training run"; corrupt: one line)."""
        return cls(read_run_json(run_dir, LINEAGE))

    def write(self, run_dir: str | Path) -> None:
        """Writes `run_dir/lineage.json` atomically, keys in the order given."""
        io_utils.write_json(RunFolder(Path(run_dir)).lineage, self._record)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._record)

    @property
    def phase(self) -> int:
        """1 or 2; 1 when not recorded."""
        return int(self._record.get(self.PHASE, 1))

    @property
    def sampler(self) -> str:
        """The phase-1 sampler (a phase-2 run's is its init run's); "none" when not recorded."""
        return str(self._record.get(self.SAMPLER, "none"))

    @property
    def seed(self) -> int:
        return int(self._record.get(self.SEED, 0) or 0)

    @property
    def dataset_dir(self) -> Optional[str]:
        """The prepared dataset the run was trained on, as recorded (None when not recorded)."""
        return self._record.get(self.DATASET_DIR) or None

    @property
    def init_run(self) -> Optional[str]:
        """The phase-1 run a phase-2 run was initialised from (None for phase 1)."""
        return self._record.get(self.INIT_RUN) or None

    @property
    def init_model_sha256(self) -> Optional[str]:
        return self._record.get(self.INIT_MODEL_SHA256) or None

    @property
    def input_size(self) -> Any:
        """The model's input size as recorded (an int for every run written by this version)."""
        return self._record.get(self.INPUT_SIZE)


# ---------------------------------------------------------------------------------------------
# The job sequence
# ---------------------------------------------------------------------------------------------

@dataclass
class OutputJob:
    """One command's output (`target`: a folder, or predict's CSV) and the sequence that writes it.

    `with job:` refuses an output that is, contains or lies inside one of `inputs` (`--overwrite` or
    not), then holds the output's lock for the block: a lock file inside the folder, or beside
    `target` (`lock_beside`: a folder replaced whole on success, or a single output file). Inside,
    `claim` compares the fingerprint with the folder's (True: it already holds this work, resume or
    skip), `stage` writes into a temporary folder that replaces `target` only on success, and `done`
    (the file written last) tells a finished job from an interrupted one. A command that has work to
    do between the overlap check and the lock calls `check_inputs` and `lock` itself.
    """

    target: str | os.PathLike  # as given: messages name it so
    kind: str  # one of io_utils.KINDS
    inputs: Mapping[str, Any] = field(default_factory=dict)
    what: str = "output folder"  # how messages name the output
    lock_beside: bool = False
    done: Optional[str] = None  # file name in `target` written last: its presence marks the job finished
    _held: Optional[contextlib.ExitStack] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in io_utils.KINDS:
            raise ValueError(f"output kind must be one of {sorted(io_utils.KINDS)}, got {self.kind!r}")

    @property
    def path(self) -> Path:
        return Path(self.target)

    def check_inputs(self) -> None:
        """Refuses an output that is, contains or lies inside any input (before any other work)."""
        io_utils.refuse_overlap(self.target, self.inputs, what=self.what)

    def lock(self) -> contextlib.AbstractContextManager[Path]:
        """The output's exclusive lock (`locks.output_lock`), for a `with` block."""
        if self.lock_beside:
            return output_lock(self.path.parent, lock_name=f".{self.path.name}.lock")
        return output_lock(self.target)

    def __enter__(self) -> "OutputJob":
        self.check_inputs()
        held = contextlib.ExitStack()
        held.enter_context(self.lock())
        self._held = held
        return self

    def __exit__(self, *exc: Any) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def holds(self, fingerprint: dict, overwrite: bool = False) -> bool:
        """True when `target` already holds this work; refuses other work unless `overwrite`, and
        output of another kind always. Changes nothing on disk (for a job that stages)."""
        return io_utils.check_output_dir(self.path, fingerprint, overwrite, kind=self.kind)

    def claim(self, fingerprint: dict, overwrite: bool = False) -> bool:
        """Claims `target` for `fingerprint`; True when it already holds this work (resume or skip).
        Other work of the same kind is replaced only with `overwrite` (`io_utils.claim_output_dir`)."""
        return io_utils.claim_output_dir(self.path, fingerprint, overwrite=overwrite, kind=self.kind)

    def restart(self, fingerprint: dict) -> None:
        """Deletes what serengeti-tf wrote in the claimed `target` and claims it afresh."""
        io_utils.reclaim_output_dir(self.path, fingerprint, kind=self.kind)

    def claim_kind(self) -> None:
        """Claims a folder that grows over several runs (experiment): only its kind is checked."""
        io_utils.claim_folder_kind(self.path, self.kind)

    def stage(self) -> contextlib.AbstractContextManager[Path]:
        """A temporary folder that replaces `target` whole only when the block succeeds."""
        return io_utils.atomic_dir(self.path, kind=self.kind)

    @property
    def finished(self) -> bool:
        """True when the file written last (`done`) is there."""
        if self.done is None:
            raise ValueError(f"the {self.kind} job names no file marking it finished")
        return (self.path / self.done).is_file()

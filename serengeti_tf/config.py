"""Typed configuration: dataclass defaults, YAML files that override only what differs, CLI overrides.

Resolution order (later wins): dataclass defaults -> YAML file(s) -> `--set section.key=value`
-> dedicated CLI flags. Every command saves the resolved result as `config.yaml` in its output
folder (`save_config`) so the run can be reproduced with `--config that/config.yaml`.

Validation errors name the key and what was received, e.g.
`config: train.epochs must be an int >= 1, got -3`.

The settings of a named choice (`train.focal_gamma` of the focal loss, `sampler.ros_cap` of ROS,
...) are declared beside the choice, in its settings dataclass (`registry.setting_field`: default, rule,
help), and read from the registries here: their defaults (`from_registry`), validation and the
keys `--set` and config files accept. The keys that config files have always had stay fields of
their section below, where they were, so saved files keep their layout; a choice registered later
adds its keys at the end of its section (a section's `_extra`).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import yaml

from serengeti_tf import choices
from serengeti_tf.choices import (
    CLASS_WEIGHTINGS,
    CROP_SELECTIONS,
    EXPORT_FORMATS,
    HEAD_REBALANCINGS,
    IMBALANCE_METHODS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    REALISATIONS,
    SAMPLERS,
    SOURCE_FORMATS,
    SPLIT_GROUPINGS,
    STRATEGIES,
)
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import write_text
from serengeti_tf.registry import Registry, Setting


def registered_settings(section: str) -> dict[str, Setting]:
    """The keys of config `section` that registered choices' settings declare: name -> Setting."""
    found: dict[str, Setting] = {}
    for registry in choices.ALL:
        if registry.section == section:
            found.update((s.name, s) for s in registry.settings())
    return found


def from_registry(key: str) -> Any:
    """A section field whose default (and rule, and help) a registered choice's settings declare."""
    section, name = key.rsplit(".", 1)

    def default() -> Any:
        declared = registered_settings(section).get(name)
        if declared is None:
            raise ValueError(f"config key {key} is a field of its section, but no registered choice declares it")
        return declared.fresh_default()

    return field(default_factory=default)


@dataclass
class _Section:
    """A config section: its fields, plus `_extra`, the values of keys that choices registered later
    declare (not in any saved file of an older version; `to_dict` puts them at the section's end)."""

    SECTION: ClassVar[str] = ""
    _extra: dict[str, Any] = field(default_factory=dict, repr=False, kw_only=True)

    def __getattr__(self, name: str) -> Any:
        # Only called when `name` is no field: a later choice's setting reads as any other key.
        if name.startswith("_"):
            raise AttributeError(name)
        declared = registered_settings(self.SECTION).get(name)
        if declared is None:
            raise AttributeError(f"{type(self).__name__} has no key {name!r}")
        return self._extra[name] if name in self._extra else declared.fresh_default()


def _field_names(section: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(section) if f.name != "_extra"]


def _extra_settings(section: Any) -> dict[str, Setting]:
    """The registered settings of `section` that are not among its fields."""
    fields = set(_field_names(section))
    return {name: s for name, s in registered_settings(section.SECTION).items() if name not in fields}


@dataclass
class CropConfig(_Section):
    """Detector crops (`prepare --detections MD.json`, `predict --detections`): which boxes, how cut."""

    SECTION: ClassVar[str] = "data.crops"

    # MD detection category name that becomes crops (MD: animal, person, vehicle).
    category: str = "animal"
    # Minimum detector confidence; null: the MD file's info.detector_metadata.typical_detection_threshold
    # when it has one (MDv4 files want ~0.8), else 0.2 (MDv5's typical threshold for crops).
    threshold: Optional[float] = None
    # A rule of `choices.CROP_SELECTIONS`: all (every box above the threshold), top1 (the best per image).
    select: str = "all"
    # Each side of the box grows by this fraction of the box size (context around the animal).
    padding: float = 0.0
    # Grow the shorter side to the longer one (centred, kept inside the image) before cutting.
    square: bool = True
    # Crops whose shorter side is below this many source pixels are dropped (box_too_small).
    min_size: int = 8


@dataclass
class DataConfig(_Section):
    """Where the source data is and how `prepare` turns it into shards."""

    SECTION: ClassVar[str] = "data"

    # auto, or a reader of `choices.SOURCE_FORMATS` (lila_csv, coco, folders, csv). `auto` infers from `metadata`.
    source_format: str = "auto"
    # Metadata files: the LILA CSV pair, one COCO Camera Traps JSON, or one plain CSV.
    metadata: list[str] = field(default_factory=list)
    # Folder that image paths in the metadata are relative to (the class-folder root for `folders`).
    image_root: str = ""
    # Seasons to keep (LILA Snapshot Serengeti only); empty keeps every season.
    seasons: list[int] = field(default_factory=list)
    drop_empty: bool = True
    drop_human: bool = True
    drop_multi_species: bool = True
    # train/val/test fractions of captures, stratified per species.
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    # A grouping of `choices.SPLIT_GROUPINGS`: capture (all frames of a capture share a split), site
    # (whole sites share a split: a cross-site test).
    group_by: str = "capture"
    seed: int = 0
    # Shorter side of the stored image, in pixels (>= the training crop).
    image_size: int = 256
    jpeg_quality: int = 90
    # Images per TFRecord shard (each train shard holds one class only).
    shard_size: int = 1024
    # Worker processes for image preparation; 0 uses every core (Beam DirectRunner: its direct_num_workers).
    workers: int = 0
    # Read metadata paths that leave data.image_root (absolute, `..`, symlinks out of it); off: such
    # rows are dropped as `outside_root` (`data/sources/root.py`).
    allow_outside_root: bool = False
    # Who runs the image stage of prepare: local (a process pool) or beam (Apache Beam, `beam_runner.py`).
    runner: str = "local"
    # Beam pipeline options, one string as on a command line (`--runner=DataflowRunner --project=...`).
    beam_options: str = ""
    # MegaDetector batch-output JSON: when set, each detection crop is one example (`crops.py`).
    detections: str = ""
    # Removed from the start of the MD file's image paths (e.g. `C:\\cams\\` from a Windows run).
    detections_strip_prefix: str = ""
    crops: CropConfig = field(default_factory=CropConfig)


@dataclass
class SamplerConfig(_Section):
    """Phase-1 re-balancing: which plan, and how tf.data realises it."""

    SECTION: ClassVar[str] = "sampler"

    name: str = "none"
    # A realisation of `choices.REALISATIONS`: repeat (exact per-class counts per epoch), rejection
    # (tf.data rejection_resample, approximate).
    realisation: str = "repeat"
    # ROS (paper appendix A.3) and RUS settings: declared with their samplers (`sampling.py`).
    ros_thresholds: list[int] = from_registry("sampler.ros_thresholds")
    ros_multipliers: list[float] = from_registry("sampler.ros_multipliers")
    ros_cap: int = from_registry("sampler.ros_cap")
    rus_cap: Optional[int] = from_registry("sampler.rus_cap")
    # Undersampled classes draw a fresh random subset every epoch unless this is set.
    fixed_undersample_subset: bool = False
    uniform_target: Optional[int] = from_registry("sampler.uniform_target")
    # Records held for within-class mixing, shared by the classes (each uses at most 8, see pipeline.py).
    shuffle_buffer: int = 2048
    # Seed of the training data stream (which images each epoch, their order, augmentation draws,
    # phase 2's feature-batch order). null: follow train.seed (then --seed changes data and weights);
    # an int fixes the data stream independently of train.seed (weights init, cRT head).
    seed: Optional[int] = None
    # Make tf.data ordering reproducible for `seed` (slower).
    deterministic: bool = False


@dataclass
class ModelConfig(_Section):
    SECTION: ClassVar[str] = "model"

    name: str = "resnet18"
    # Square input side in pixels: 224 as in the paper, smaller for CPU runs.
    input_size: int = 224


@dataclass
class TrainConfig(_Section):
    SECTION: ClassVar[str] = "train"

    phase: int = 1
    epochs: int = 30
    # Global batch size: split across replicas under a tf.distribute strategy.
    batch_size: int = 64
    learning_rate: float = 1e-3
    # An optimizer of `choices.OPTIMIZERS` (`train/optimizer_choices.py`).
    optimizer: str = "adam"
    early_stopping_patience: int = 5
    # Train-time augmentation; phase 2 defaults to none (enables the cached-feature fast path).
    augment: bool = True
    phase2_augment: bool = False
    # Cap on steps per epoch (null: one full pass over the sampled epoch).
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    seed: int = 0
    mixed_precision: bool = False
    strategy: str = "default"
    xla: bool = False
    # Loss and class weighting, and their settings (declared with them in `train/loss_choices.py`).
    loss: str = "cross_entropy"
    class_weighting: str = "none"
    effective_number_beta: float = from_registry("train.effective_number_beta")
    focal_gamma: float = from_registry("train.focal_gamma")
    logit_adjust_tau: float = from_registry("train.logit_adjust_tau")
    # Classifier re-balancing after training (`rebalancing.py`), and its settings (declared with the
    # methods in `train/head_choices.py`).
    head_rebalancing: str = "none"
    posthoc_taus: list[float] = from_registry("train.posthoc_taus")
    tau_norm_taus: list[float] = from_registry("train.tau_norm_taus")
    tau_norm_bias: str = from_registry("train.tau_norm_bias")
    crt_epochs: int = from_registry("train.crt_epochs")
    crt_learning_rate: float = from_registry("train.crt_learning_rate")
    crt_steps_per_epoch: Optional[int] = from_registry("train.crt_steps_per_epoch")
    # Fine-tuning (issue 14, `pretrained.py`). Phase 1 starts its backbone from this local source: a
    # keras-hub ResNet-18 preset folder, or a .keras / .weights.h5 of this project's model (the head
    # is always new). null: random initialisation, as in the paper.
    init_weights: Optional[str] = None
    # Leading backbone stages kept frozen in phase 1: 0 none, 1 the stem, 2 stem + stage 2, ...,
    # 5 the whole backbone (by layer role; frozen BatchNorm runs in inference mode).
    freeze_stages: int = 0
    # Learning rate of the backbone's weights in phase 1 (discriminative fine-tuning); the head keeps
    # train.learning_rate. null: one learning rate for everything.
    backbone_learning_rate: Optional[float] = None
    # Train-image views behind the cached features that the phase-2 fast path and cRT fit a head on:
    # 1 = the un-augmented centre crop (eval view) of each image; k > 1 = k random train-time
    # augmented views of each image (computed once, cached; an epoch draws N of the N*k rows).
    feature_views: int = 1


@dataclass
class EvalConfig(_Section):
    SECTION: ClassVar[str] = "eval"

    split: str = "test"
    top_k: int = 5
    batch_size: int = 128
    bootstrap_samples: int = 1000
    # Class groups by train count: head >= head_min, tail < tail_max, medium in between. null: derived
    # from the training counts (`evaluation.group_thresholds`: tertiles of the classes' train counts);
    # the `paper` preset sets the paper's 5000 / 500.
    head_min: Optional[int] = None
    tail_max: Optional[int] = None
    seed: int = 0
    # CSV label,scientificName read before the shipped Snapshot Serengeti table (species.scientific_names)
    # by predict's Camtrap DP output; "" uses the shipped table alone.
    scientific_names: str = ""


@dataclass
class ExperimentConfig(_Section):
    """The grid `experiment` runs: every sampler through phase 1 (and phase 2), for several seeds."""

    SECTION: ClassVar[str] = "experiment"

    # `none` is the paper's baseline: one phase on the original distribution.
    samplers: list[str] = field(default_factory=lambda: ["none", "ros", "rus", "ros_rus_15k", "ros_rus_5k"])
    seeds: int = 1
    # Imbalance methods (names from `choices.IMBALANCE_METHODS`) run beside the samplers: one single-phase run
    # per seed on the original distribution with the method's train.* settings.
    methods: list[str] = field(default_factory=list)
    # Epochs of phase 2 (null: train.epochs).
    phase2_epochs: Optional[int] = None


@dataclass
class ExportConfig(_Section):
    """`serengeti-tf export`: the deployable model's format and its agreement check (`export.py`)."""

    SECTION: ClassVar[str] = "export"

    # A format of `choices.EXPORT_FORMATS` (`models/export_formats.py`): saved_model, tflite, keras.
    format: str = "saved_model"
    # Test-split images on which the export is compared with the run's Keras model (0: no check).
    agreement_images: int = 256
    # The TFLite settings (declared with the format).
    fixed_shape: list[int] = from_registry("export.fixed_shape")
    calibration_images: int = from_registry("export.calibration_images")
    calibration_seed: int = from_registry("export.calibration_seed")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


# Stored image sizes (shorter side, pixels) prepare and predict accept.
IMAGE_SIZE_RANGE = (16, 4096)
# Largest batch (images per step): beyond it one batch of 224 px images no longer fits any device.
BATCH_SIZE_LIMIT = 65536
# Seeds go to numpy's and TensorFlow's generators, which take 0 <= seed < 2**32.
SEED_LIMIT = 2 ** 32
_SEED_RULE = (lambda v: 0 <= v < SEED_LIMIT, "an int in [0, 2**32 - 1] (a random generator seed)")
_Rule = tuple[typing.Callable[[Any], bool], typing.Union[str, typing.Callable[[], str]]]


def _choice(registry: Registry, *extra: str) -> _Rule:
    """A rule accepting `extra` and the registry's names, read when validating (so a choice
    registered after import counts too); the description lists them."""
    return (lambda v: v in extra or v in registry), (lambda: registry.one_of(*extra))


def _distinct_names(registry: Registry, what: str, non_empty: bool) -> _Rule:
    """A rule for a list of distinct names of the registry."""
    return ((lambda v: (len(v) > 0 or not non_empty) and all(x in registry for x in v) and len(set(v)) == len(v)),
            lambda: f"a {'non-empty ' if non_empty else ''}list of distinct {what} from {', '.join(registry.names())}")


# Range and choice rules: (predicate, description of what is allowed, or a function giving it). The
# rules of the choices' settings are declared with them (`registered_settings`).
_RULES: dict[str, _Rule] = {
    "data.source_format": _choice(SOURCE_FORMATS, "auto"),
    "data.group_by": _choice(SPLIT_GROUPINGS),
    "data.split_fractions": (lambda v: len(v) == 3 and all(0 <= x <= 1 for x in v)
                             and abs(sum(v) - 1) < 1e-6 and v[0] > 0,
                             "three fractions in [0, 1] summing to 1 with train > 0"),
    "data.image_size": (lambda v: IMAGE_SIZE_RANGE[0] <= v <= IMAGE_SIZE_RANGE[1],
                        f"an int in [{IMAGE_SIZE_RANGE[0]}, {IMAGE_SIZE_RANGE[1]}]"),
    "data.jpeg_quality": (lambda v: 1 <= v <= 100, "an int in [1, 100]"),
    "data.shard_size": (lambda v: v >= 1, "an int >= 1"),
    "data.workers": (lambda v: v >= 0, "an int >= 0"),
    "data.runner": (lambda v: v in ("local", "beam"), "one of local, beam"),
    "data.seasons": (lambda v: all(s >= 1 for s in v), "season numbers >= 1"),
    "data.crops.category": (lambda v: v.strip() != "", "a non-empty MD category name"),
    "data.crops.threshold": (lambda v: v is None or 0 <= v <= 1, "a float in [0, 1] or null (the MD file's own)"),
    "data.crops.select": _choice(CROP_SELECTIONS),
    "data.crops.padding": (lambda v: 0 <= v <= 2, "a float in [0, 2]"),
    "data.crops.min_size": (lambda v: v >= 1, "an int >= 1"),
    "sampler.name": _choice(SAMPLERS),
    "sampler.realisation": _choice(REALISATIONS),
    "sampler.shuffle_buffer": (lambda v: v >= 1, "an int >= 1"),
    "model.name": _choice(MODELS),
    "model.input_size": (lambda v: 32 <= v <= 1024, "an int in [32, 1024]"),
    "train.phase": (lambda v: v in (1, 2), "1 or 2"),
    "train.epochs": (lambda v: v >= 1, "an int >= 1"),
    "train.batch_size": (lambda v: 1 <= v <= BATCH_SIZE_LIMIT, f"an int in [1, {BATCH_SIZE_LIMIT}]"),
    "train.learning_rate": (lambda v: 0 < v < 10, "a float in (0, 10)"),
    "train.optimizer": _choice(OPTIMIZERS),
    "train.early_stopping_patience": (lambda v: v >= 0, "an int >= 0 (0 disables it)"),
    "train.steps_per_epoch": (lambda v: v is None or v >= 1, "an int >= 1 or null"),
    "train.validation_steps": (lambda v: v is None or v >= 1, "an int >= 1 or null"),
    "train.strategy": _choice(STRATEGIES),
    "train.loss": _choice(LOSSES),
    "train.class_weighting": _choice(CLASS_WEIGHTINGS),
    "train.head_rebalancing": _choice(HEAD_REBALANCINGS),
    "train.init_weights": (lambda v: v is None or v.strip() != "", "a path or null"),
    "train.freeze_stages": (lambda v: 0 <= v <= 5, "an int in [0, 5] (1 = stem, 5 = whole backbone)"),
    "train.backbone_learning_rate": (lambda v: v is None or 0 < v < 10, "a float in (0, 10) or null"),
    "train.feature_views": (lambda v: 1 <= v <= 64, "an int in [1, 64]"),
    "eval.split": (lambda v: v in ("train", "val", "test"), "one of train, val, test"),
    "eval.top_k": (lambda v: v >= 1, "an int >= 1"),
    "eval.batch_size": (lambda v: 1 <= v <= BATCH_SIZE_LIMIT, f"an int in [1, {BATCH_SIZE_LIMIT}]"),
    "eval.bootstrap_samples": (lambda v: v >= 0, "an int >= 0"),
    "eval.head_min": (lambda v: v is None or v >= 1, "an int >= 1 or null (derived from the train counts)"),
    "eval.tail_max": (lambda v: v is None or v >= 1, "an int >= 1 or null (derived from the train counts)"),
    "experiment.samplers": _distinct_names(SAMPLERS, "samplers", non_empty=True),
    "experiment.methods": _distinct_names(IMBALANCE_METHODS, "imbalance methods", non_empty=False),
    "experiment.seeds": (lambda v: 1 <= v <= 100, "an int in [1, 100]"),
    **{f"{section}.seed": _SEED_RULE for section in ("data", "train", "eval")},
    "sampler.seed": (lambda v: v is None or _SEED_RULE[0](v), _SEED_RULE[1] + " or null (follow train.seed)"),
    "experiment.phase2_epochs": (lambda v: v is None or v >= 1, "an int >= 1 or null"),
    "export.format": _choice(EXPORT_FORMATS),
    "export.agreement_images": (lambda v: v >= 0, "an int >= 0"),
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp) -> Any:
    """Checks `value` against the annotated type `tp`, allowing int->float; returns the value."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(key, value, inner)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config: {key} must be a list, got {value!r}")
        (item_type,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer() and key.endswith("multipliers"):
        return int(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise UserError(f"config: {key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _apply(obj, updates: dict, prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = set(_field_names(obj))
    extra = _extra_settings(obj) if isinstance(obj, _Section) else {}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key in extra:
            obj._extra[key] = _coerce(full, value, extra[key].type)
            continue
        if key not in names:
            raise UserError(f"config: unknown key '{full}' (known in '{prefix.rstrip('.') or 'top level'}': "
                            f"{', '.join(sorted(names | set(extra)))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"config: {full} must be a mapping, got {value!r}")
            _apply(current, value, f"{full}.")
        else:
            setattr(obj, key, _coerce(full, value, hints[key]))


def _sections(config: Config) -> typing.Iterator[_Section]:
    """Every section of `config`, nested ones (data.crops) after their parent."""
    pending = [getattr(config, f.name) for f in dataclasses.fields(config)]
    while pending:
        section = pending.pop(0)
        yield section
        pending[:0] = [getattr(section, name) for name in _field_names(section)
                       if isinstance(getattr(section, name), _Section)]


def validate(config: Config) -> Config:
    """Checks every range/choice rule and every registered choice setting's rule; raises UserError
    naming the first bad key. Keys of later choices left unset get their defaults (so a config
    equals its saved and reloaded copy)."""
    rules = dict(_RULES)
    for section in _sections(config):
        for declared in registered_settings(section.SECTION).values():
            rules[declared.key] = (declared.rule, lambda declared=declared: declared.allowed)
        for name, declared in _extra_settings(section).items():
            section._extra.setdefault(name, declared.fresh_default())
    for key, (ok, allowed) in rules.items():
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise UserError(f"config: {key} must be {allowed() if callable(allowed) else allowed}, got {value!r}")
    if len(config.sampler.ros_thresholds) != len(config.sampler.ros_multipliers):
        raise UserError("config: sampler.ros_thresholds and sampler.ros_multipliers must have the same length, "
                        f"got {len(config.sampler.ros_thresholds)} and {len(config.sampler.ros_multipliers)}")
    if None not in (config.eval.tail_max, config.eval.head_min) and config.eval.tail_max > config.eval.head_min:
        raise UserError(f"config: eval.tail_max ({config.eval.tail_max}) must not exceed "
                        f"eval.head_min ({config.eval.head_min})")
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """Parses `section.key=value`; the value is read as YAML (so 3, 0.1, true, [1, 2] work)."""
    if "=" not in text:
        raise UserError(f"config: override must look like section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def nested(key: str, value: Any) -> dict:
    """`'train.epochs', 3` -> `{'train': {'epochs': 3}}`."""
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config: file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise UserError(f"config: {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                        f"{err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise UserError(f"config: {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config: {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def resolve(files: typing.Sequence[str | Path] = (), overrides: typing.Sequence[str] = (),
            updates: typing.Sequence[dict] = ()) -> Config:
    """Defaults, then each YAML file, then `key=value` overrides, then update dicts (CLI flags)."""
    config = Config()
    for path in files:
        _apply(config, load_yaml(path), "")
    for text in overrides:
        _apply(config, nested(*parse_override(text)), "")
    for update in updates:
        _apply(config, update, "")
    return validate(config)


def to_dict(config: Config | _Section) -> dict:
    """The config as nested plain dicts, in field order; a section's later-registered keys last."""
    out = {}
    for name in _field_names(config):
        value = getattr(config, name)
        out[name] = to_dict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    if isinstance(config, _Section):
        out.update((name, copy.deepcopy(getattr(config, name))) for name in _extra_settings(config))
    return out


def from_dict(data: dict) -> Config:
    config = Config()
    _apply(config, data, "")
    return validate(config)


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Config, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Writes the fully resolved config beside a command's outputs (atomically)."""
    path = Path(out_dir) / name
    write_text(path, dump(config))
    return path


def load_saved(path: str | Path) -> Config:
    """Reads a `config.yaml` written by `save_config`."""
    return from_dict(load_yaml(path))

"""Phase-1 sampling plans: per-class train counts in, per-class phase-1 target counts out.

A plan is a DataFrame with one row per class (input order kept) and columns
`species, original, target, ratio` (ratio = target / original; 0 for an empty class).
`sampling_plan` is pure; `pipeline.make_train_dataset` realises a plan with tf.data, and
`write_plan` is the `serengeti-tf plan` job (CSV + bar plot + resolved config).

Samplers (paper appendix A.3 for the first five; every threshold, multiplier and cap is in
`SamplerConfig`, so YAML can change them). Each is a function `(counts, SamplerConfig) -> targets`
registered below in `choices.SAMPLERS`, in the order reports list them; a new sampler is one more
such function and its `@SAMPLERS.register(name)` line (config, CLI and reports read the registry):

- `none`: the original distribution (baseline).
- `ros`: a class with n < thresholds[-1] images is multiplied by the multiplier of the first
  threshold it is below (10/8/6/4 below 100/500/1000/5000), capped at `ros_cap` (5000);
  ROS never shrinks a class, so larger classes are left as they are.
- `rus`: classes above the RUS cap (15,000) are cut to it.
- `ros_rus_15k`, `ros_rus_5k`: ROS, then RUS with cap 15,000 / 5,000.
  `sampler.rus_cap` overrides the RUS cap of `rus` and both ROS&RUS samplers.
- `uniform`: every non-empty class gets `uniform_target` images, or (null) the total spread evenly
  over the non-empty classes (the first `total % k` classes get one more, so the total is kept).
- `sqrt`: targets proportional to sqrt(n) (square-root frequency sampling), scaled so the total
  equals the original total (largest-remainder rounding; every non-empty class keeps >= 1).

An empty class (0 training images) always gets target 0: nothing can be drawn from it.
A sampler's parameters are its settings dataclass, registered with it (`RosSettings`: each field is
its `sampler.*` config key, with its rule and help); `config.validate` checks them (the one gate),
`sampling_plan` checks the counts.

The realisations of a plan (`sampler.realisation`) are registered here too, for the same reason the
samplers are (listing the names must not import TensorFlow); their builders live in `pipeline.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf.choices import REALISATIONS, SAMPLERS
from serengeti_tf.config import SamplerConfig
from serengeti_tf.data import dataset
from serengeti_tf.errors import UserError, setting
from serengeti_tf.io_utils import save_figure, write_csv, write_json
from serengeti_tf.plots import plot_plan
from serengeti_tf.registry import lazy_function, setting_field
from serengeti_tf.run_folder import OutputJob, PlanFolder

PLAN_COLUMNS = ["species", "original", "target", "ratio"]

# The paper's RUS caps: ROS&RUS(5K) is the only sampler with a smaller one.
PAPER_RUS_CAP = 15000
SMALL_RUS_CAP = 5000


def _validate_counts(train_counts: Mapping[str, int]) -> tuple[list[str], np.ndarray]:
    if len(train_counts) == 0:
        raise UserError("sampling plan: no classes given (train counts are empty)")
    names = [str(name) for name in train_counts]
    values = []
    for name, count in train_counts.items():
        if isinstance(count, bool) or not float(count).is_integer() or count < 0:
            raise UserError(f"sampling plan: train count of {name!r} must be an int >= 0, got {count!r}")
        values.append(int(count))
    if len(set(names)) != len(names):
        raise UserError(f"sampling plan: duplicate class names in {names}")
    return names, np.asarray(values, dtype=np.int64)


REALISATIONS.register("repeat", lazy_function("serengeti_tf.data.pipeline:repeat_records"),
                      help="exact per-class counts per epoch")
REALISATIONS.register("rejection", lazy_function("serengeti_tf.data.pipeline:rejection_records"),
                      help="tf.data rejection_resample, approximate counts")


@dataclass(frozen=True)
class RosSettings:
    ros_thresholds: list[int] = setting_field([100, 500, 1000, 5000],
                                              lambda v: len(v) > 0 and all(x > 0 for x in v) and list(v) == sorted(v),
                                              "increasing positive ints", "class-size bands of ROS")
    ros_multipliers: list[float] = setting_field([10, 8, 6, 4], lambda v: len(v) > 0 and all(x >= 1 for x in v),
                                                 "numbers >= 1", "a class below thresholds[i] is multiplied by this")
    ros_cap: int = setting_field(5000, lambda v: v >= 1, "an int >= 1", "no class is oversampled beyond this")


@dataclass(frozen=True)
class RusSettings:
    rus_cap: Optional[int] = setting_field(None, lambda v: v is None or v >= 1, "an int >= 1 or null",
                                           "classes above it are cut to it (null: 15,000, or 5,000 for ros_rus_5k)")


@dataclass(frozen=True)
class RosRusSettings(RosSettings, RusSettings):
    """ROS, then RUS: the settings of both."""


@dataclass(frozen=True)
class UniformSettings:
    uniform_target: Optional[int] = setting_field(None, lambda v: v is None or v >= 1, "an int >= 1 or null",
                                                  "images per class (null: the mean class size)")


@SAMPLERS.register("none", help="the original distribution (the paper's baseline)")
def original_targets(counts: np.ndarray, sampler: SamplerConfig) -> np.ndarray:
    """No re-balancing: the original distribution (the paper's baseline)."""
    return counts.copy()


@SAMPLERS.register("ros", settings=RosSettings, help="random oversampling of the small classes")
def ros_targets(counts: np.ndarray, sampler: SamplerConfig) -> np.ndarray:
    """Random oversampling: multiply small classes by the multiplier of their size band, capped."""
    out = counts.copy()
    for i, n in enumerate(counts):
        for threshold, multiplier in zip(sampler.ros_thresholds, sampler.ros_multipliers):
            if n < threshold:
                # The cap limits the oversampled size but never shrinks a class (ROS only adds).
                out[i] = max(n, min(math.floor(n * multiplier + 0.5), sampler.ros_cap))
                break
    return out


def rus_targets(counts: np.ndarray, cap: int) -> np.ndarray:
    """Random undersampling: cut every class above `cap` to `cap`."""
    return np.minimum(counts, cap)


def rus_cap_for(sampler: SamplerConfig, paper_cap: int) -> int:
    """The RUS cap in force: `sampler.rus_cap` if set, else the sampler's paper default."""
    return paper_cap if sampler.rus_cap is None else int(sampler.rus_cap)


@SAMPLERS.register("rus", settings=RusSettings, help="random undersampling of the large classes")
def rus_15k_targets(counts: np.ndarray, sampler: SamplerConfig) -> np.ndarray:
    """RUS with the paper's cap of 15,000."""
    return rus_targets(counts, rus_cap_for(sampler, PAPER_RUS_CAP))


@SAMPLERS.register("ros_rus_15k", settings=RosRusSettings, help="ROS, then RUS with cap 15,000")
def ros_rus_15k_targets(counts: np.ndarray, sampler: SamplerConfig) -> np.ndarray:
    """ROS, then RUS with cap 15,000."""
    return rus_targets(ros_targets(counts, sampler), rus_cap_for(sampler, PAPER_RUS_CAP))


@SAMPLERS.register("ros_rus_5k", settings=RosRusSettings, help="ROS, then RUS with cap 5,000")
def ros_rus_5k_targets(counts: np.ndarray, sampler: SamplerConfig) -> np.ndarray:
    """ROS, then RUS with cap 5,000."""
    return rus_targets(ros_targets(counts, sampler), rus_cap_for(sampler, SMALL_RUS_CAP))


@SAMPLERS.register("uniform", settings=UniformSettings, help="the same count for every class")
def uniform_sampler_targets(counts: np.ndarray, sampler: SamplerConfig) -> np.ndarray:
    """`uniform_targets` with `sampler.uniform_target`."""
    return uniform_targets(counts, sampler.uniform_target)


def uniform_targets(counts: np.ndarray, target: int | None) -> np.ndarray:
    """The same count for every non-empty class: `target`, or the total spread evenly."""
    nonempty = counts > 0
    out = np.zeros_like(counts)
    if target is not None:
        out[nonempty] = target
        return out
    k = int(nonempty.sum())
    if k == 0:
        return out
    base, extra = divmod(int(counts.sum()), k)
    values = np.full(k, base, dtype=np.int64)
    values[:extra] += 1
    out[nonempty] = values
    return out


@SAMPLERS.register("sqrt", help="targets proportional to sqrt(class size), same total")
def sqrt_targets(counts: np.ndarray, sampler: Optional[SamplerConfig] = None) -> np.ndarray:
    """Targets proportional to sqrt(n), same total as the original (largest-remainder rounding)."""
    total = int(counts.sum())
    out = np.zeros_like(counts)
    nonempty = counts > 0
    if total == 0:
        return out
    weights = np.sqrt(counts[nonempty].astype(np.float64))
    exact = weights / weights.sum() * total
    values = np.maximum(np.floor(exact).astype(np.int64), 1)
    shortfall = total - int(values.sum())
    # Hand the rounding leftovers to the classes with the largest fractional parts (stable order).
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    if shortfall > 0:
        values[order[:shortfall]] += 1
    out[nonempty] = values
    return out


def sampling_plan(train_counts: Mapping[str, int], sampler: SamplerConfig) -> pd.DataFrame:
    """Per-class phase-1 targets for `sampler`; columns species, original, target, ratio (input order)."""
    targets_of = SAMPLERS.lookup(sampler.name)
    names, counts = _validate_counts(train_counts)
    targets = np.asarray(targets_of(counts, sampler), dtype=np.int64)
    targets = np.where(counts > 0, targets, 0)
    ratio = np.divide(targets, counts, out=np.zeros(len(counts), dtype=np.float64), where=counts > 0)
    return pd.DataFrame({"species": names, "original": counts.astype(np.int64),
                         "target": targets.astype(np.int64), "ratio": ratio})


def check_plan_matches(plan: pd.DataFrame, class_names: Sequence[str]) -> None:
    """Raises UserError unless the plan has exactly one row for every class of the dataset."""
    missing_cols = [c for c in PLAN_COLUMNS if c not in plan.columns]
    if missing_cols:
        raise UserError(f"sampling plan lacks column(s) {', '.join(missing_cols)}; got {list(plan.columns)}")
    planned = [str(s) for s in plan["species"]]
    duplicates = sorted({s for s in planned if planned.count(s) > 1})
    if duplicates:
        raise UserError(f"sampling plan lists class(es) more than once: {', '.join(duplicates)}")
    extra = [s for s in planned if s not in set(class_names)]
    if extra:
        raise UserError(f"sampling plan has class(es) the dataset lacks: {', '.join(extra)} "
                        f"(dataset classes: {', '.join(class_names)})")
    absent = [s for s in class_names if s not in set(planned)]
    if absent:
        raise UserError(f"sampling plan has no row for dataset class(es): {', '.join(absent)}")
    bad = plan[(plan["target"] < 0) | ((plan["original"] == 0) & (plan["target"] > 0))]
    if len(bad):
        row = bad.iloc[0]
        raise UserError(f"sampling plan: class {row['species']!r} has target {row['target']} from "
                        f"{row['original']} original images (targets must be >= 0, and 0 for an empty class)")


def plan_totals(plan: pd.DataFrame) -> dict[str, int]:
    """Total original and target images, and classes over/under-sampled."""
    return {"classes": int(len(plan)), "original": int(plan["original"].sum()),
            "target": int(plan["target"].sum()),
            "oversampled": int((plan["target"] > plan["original"]).sum()),
            "undersampled": int((plan["target"] < plan["original"]).sum())}


# Largest per-class count a counts CSV may give (far beyond any camera-trap dataset; int64-safe).
MAX_COUNT = 10 ** 12


def read_counts_csv(path: str | Path) -> dict[str, int]:
    """Reads a `species,count` CSV (a `train` column is accepted instead of `count`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"counts file not found: {path}")
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"counts file {path} is not a readable CSV: {str(err).splitlines()[0]}") from None
    column = "count" if "count" in frame.columns else "train" if "train" in frame.columns else None
    if "species" not in frame.columns or column is None:
        raise UserError(f"counts file {path} must have columns species,count; got {list(frame.columns)}")
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~values.between(0, MAX_COUNT) | (values != values.round())
    if bad.any():
        raise UserError(f"counts file {path}: {column} must be a whole number in [0, {MAX_COUNT:,}], "
                        f"got {frame.loc[bad, column].iloc[0]!r}")
    species = frame["species"].astype(str)
    repeated = species[species.duplicated()]
    if not repeated.empty:
        raise UserError(f"counts file {path} lists species {repeated.iloc[0]!r} more than once; give each species "
                        f"one row")
    return dict(zip(species, values.astype(np.int64).tolist()))


def write_plan(config, out_dir: str | Path, data_dir: str | Path | None = None,
               counts_csv: str | Path | None = None, overwrite: bool = False) -> pd.DataFrame:
    """The `plan` job: plan from a prepared dataset or a counts CSV -> plan.csv, plan.png, config.yaml."""
    if (data_dir is None) == (counts_csv is None):
        raise UserError(f"plan: give exactly one of a prepared dataset ({setting('dataset_dir')}) or a counts CSV "
                        f"({setting('counts')}); "
                        f"got data={data_dir!r}, counts={counts_csv!r}")
    job = OutputJob(out_dir, "plan", {setting("dataset_dir"): data_dir, setting("counts"): counts_csv})
    job.check_inputs()
    counts = dataset.train_counts(data_dir) if data_dir is not None else read_counts_csv(counts_csv)
    plan = sampling_plan(counts, config.sampler)
    source = str(Path(data_dir if data_dir is not None else counts_csv).resolve())
    with job.lock():  # one process per output folder
        job.claim({"command": "plan", "source": source, "sampler": cfg.to_dict(config)["sampler"]}, overwrite)
        out = PlanFolder(Path(out_dir))
        cfg.save_config(config, out.root)
        write_csv(out.plan, plan)
        totals = plan_totals(plan)
        # Detector-crop datasets count crops: every count here is crops, and the files say so.
        unit = dataset.example_unit(data_dir) if data_dir is not None else "images"
        write_json(out.totals, {"sampler": config.sampler.name, "unit": unit, **totals})
        title = (f"{config.sampler.name}: {totals['original']:,} -> {totals['target']:,} training {unit}, "
                 f"{totals['classes']} classes")
        save_figure(out.figure, plot_plan(plan, title, unit))
    return plan

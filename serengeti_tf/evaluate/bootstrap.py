"""Intervals for the scores of one model (`bootstrap_ci`) and of the difference between two (`paired_bootstrap`).

ONE MODEL (`bootstrap_ci`): a STRATIFIED CAPTURE BOOTSTRAP with a plain PERCENTILE interval for
accuracy and for the macro F1 of the species with at least `MIN_CAPTURES` (10) test captures, and an
exact binomial (CLOPPER-PEARSON) interval on the recall of every species, reported separately.
Nothing is re-centred and no constant was chosen on the benchmark that checks the coverage.

What each interval is for (the estimands, `ESTIMANDS`; the README's evaluation section and
`benchmarks/evaluation_bootstrap.py` state them in these words):
- accuracy: accuracy of the model's expected confusion matrix on a test set with this split's
  number of test captures per species;
- `macro_f1_well_tested`: macro F1, over the species with at least 10 test captures, of the
  model's expected confusion matrix on a test set with this split's number of test captures per
  species (precision still counts the mistakes of every species, rare ones included);
- `recall`: per species: the probability that the model labels one of its images correctly.
"Expected confusion matrix": each species' test captures times the model's per-species confusion
rates on the population of captures (the species' row of outcomes).
The headline `macro_f1` over all classes gets NO interval: a species with a handful of test
captures has an F1 of 0 or nearly 1 that no resampling of those captures can put an honest spread
on (the previous smoothed, re-centred scheme tried: with such species weak it covered 0.76 of
simulated test sets in benchmarks/results/evaluation_bootstrap.md, 0.58-0.74 in the issue's own
simulations); their recall intervals say what those few captures support instead.

Why stratified (captures resampled within each species, each species keeping its number of test
captures): the test split's class composition is fixed by the split rule, and the estimands are
defined at these counts. Why captures: frames of one capture are near-duplicates; resampling
images would make the interval too narrow. A capture belongs to the stratum of its majority frame
label (images when capture ids are unknown).

Why 10 test captures (a rule fixed before any simulation, not tuned): resampling n captures with
replacement reproduces a species' sampling variance only by the factor (n - 1) / n and from n + 1
distinct values of its recall; at n = 10 that loses 10% of the variance, below it more (and a
one-capture species is redrawn identically every time, with no spread at all).

Why Clopper-Pearson on captures: its coverage is at least the nominal level for every true recall
and every n (Wilson's dips below it near 0 and 1 at small n), which matters most where the question
lives, on species with 1-9 captures. The count is the species' test captures n (captures containing
one of its images) and the successes recall * n: exact when the frames of a capture agree (and with
one frame per capture); when they disagree the variance of the capture mean is below the binomial
one, so the interval is conservative.

TWO MODELS (`paired_bootstrap`): not resampled here; a paired randomization test of one pair of
models, and across training seeds a t-interval, in `seed_aware.py` (which says why).

Speed: every resample is a weighted confusion matrix (np.bincount), no per-resample indexing of
the data and no scikit-learn call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.special import betaincinv  # the beta quantile; scipy.stats costs ~1 s to import

from serengeti_tf.errors import UserError
from serengeti_tf.evaluate import seed_aware
from serengeti_tf.metrics import confusion_counts, scores_from_confusion

SINGLE_SCHEME = "stratified_capture_percentile+clopper_pearson_recall"  # `bootstrap_ci`
MIN_CAPTURES = 10  # species in the macro F1 interval: at least this many test captures (see above)
ESTIMANDS = {
    "accuracy": ("accuracy of the model's expected confusion matrix on a test set with this split's number "
                 "of test captures per species"),
    "macro_f1_well_tested": ("macro F1, over the species with at least {min_captures} test captures, of the "
                             "model's expected confusion matrix on a test set with this split's number of test "
                             "captures per species"),
    "recall": "per species: the probability that the model labels one of its images correctly",
}


@dataclass(frozen=True)
class Strata:
    """The resampling units of one evaluated split (independent of any model's predictions)."""
    y_true: np.ndarray          # [N] image labels
    unit_of_image: np.ndarray   # [N] capture (unit) index of each image
    unit_order: np.ndarray      # [U] unit indices sorted by stratum
    slot_stratum: np.ndarray    # [U] stratum (class) of each slot, aligned with unit_order
    slot_size: np.ndarray       # [U] units in the slot's stratum
    slot_start: np.ndarray      # [U] first position of the slot's stratum in unit_order
    stratum_start: np.ndarray   # [C] first position of each stratum in unit_order
    stratum_size: np.ndarray    # [C] units per stratum
    frames_per_unit: np.ndarray  # [C] mean images per unit of each stratum (weight of a pseudo-capture)
    image_order: np.ndarray     # [N] image indices sorted by label
    label_start: np.ndarray     # [C]
    label_size: np.ndarray      # [C]
    present: np.ndarray         # classes with at least one image
    num_classes: int
    unit: str                   # "capture" or "image"

    @property
    def num_units(self) -> int:
        return len(self.unit_order)

    @property
    def units_per_class(self) -> np.ndarray:
        """[C] units (captures) holding at least one image of each class."""
        pairs = np.unique(self.unit_of_image * self.num_classes + self.y_true)
        return np.bincount(pairs % self.num_classes, minlength=self.num_classes)


def make_strata(y_true: np.ndarray, num_classes: int, groups: Optional[Sequence] = None) -> Strata:
    """Units (captures if `groups` gives capture ids, else images) and their strata (majority label)."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if len(y_true) == 0:
        raise UserError("bootstrap: no examples to resample")
    if groups is not None:
        if len(groups) != len(y_true):
            raise UserError(f"bootstrap: need one capture id per image, got {len(groups)} for {len(y_true)}")
        unit_of_image = pd.factorize(pd.Series(np.asarray(groups)).astype(str))[0]
        unit = "capture"
    else:
        unit_of_image = np.arange(len(y_true))
        unit = "image"
    unit_of_image = unit_of_image.reshape(-1)
    num_units = int(unit_of_image.max()) + 1
    votes = np.bincount(unit_of_image * num_classes + y_true, minlength=num_units * num_classes)
    votes = votes.reshape(num_units, num_classes)
    unit_class = votes.argmax(axis=1)  # majority label, ties to the lowest index
    unit_order = np.argsort(unit_class, kind="stable")
    stratum_size = np.bincount(unit_class, minlength=num_classes)
    frames = np.bincount(unit_class, weights=votes.sum(axis=1), minlength=num_classes)
    label_size = np.bincount(y_true, minlength=num_classes)
    stratum_start = np.concatenate([[0], np.cumsum(stratum_size)[:-1]])
    slot_stratum = unit_class[unit_order]
    return Strata(y_true=y_true, unit_of_image=unit_of_image, unit_order=unit_order,
                  slot_stratum=slot_stratum, slot_size=stratum_size[slot_stratum],
                  slot_start=stratum_start[slot_stratum], stratum_start=stratum_start,
                  stratum_size=stratum_size,
                  frames_per_unit=np.where(stratum_size > 0, frames / np.maximum(stratum_size, 1), 0.0),
                  image_order=np.argsort(y_true, kind="stable"),
                  label_start=np.concatenate([[0], np.cumsum(label_size)[:-1]]), label_size=label_size,
                  present=np.flatnonzero(label_size > 0), num_classes=num_classes, unit=unit)


@dataclass(frozen=True)
class Resample:
    """One resample: draws per unit plus pseudo-captures (target class, source image, weight)."""
    unit_draws: np.ndarray
    targets: np.ndarray
    sources: np.ndarray
    pseudo_weights: np.ndarray


def draw_resample(strata: Strata, rng: np.random.Generator, smoothing: float) -> Resample:
    """One smoothed stratified resample (see the module docstring)."""
    p_pseudo = smoothing / (strata.slot_size + smoothing)
    # One uniform per slot: below p_pseudo a pseudo-capture, else (rescaled) the capture to draw.
    u = rng.random(strata.num_units)
    pseudo = u < p_pseudo
    real = ~pseudo
    size = strata.slot_size[real]
    p_real = p_pseudo[real]
    within = np.minimum(((u[real] - p_real) / (1 - p_real) * size).astype(np.int64), size - 1)
    units = strata.unit_order[strata.slot_start[real] + within]
    draws = np.bincount(units, minlength=strata.num_units).astype(np.float64)
    targets = strata.slot_stratum[pseudo]
    source_class = strata.present[rng.integers(0, len(strata.present), len(targets))]
    offset = (rng.random(len(targets)) * strata.label_size[source_class]).astype(np.int64)
    sources = strata.image_order[strata.label_start[source_class] + offset]
    return Resample(draws, targets, sources, strata.frames_per_unit[targets])


@dataclass(frozen=True)
class Predictions:
    """One model's predictions on the strata's images, compressed to (unit, confusion cell, count)."""
    y_pred: np.ndarray
    pair_unit: np.ndarray
    pair_cell: np.ndarray
    pair_count: np.ndarray


def prepare_predictions(strata: Strata, y_pred: np.ndarray) -> Predictions:
    """Frames of one capture with the same (true, predicted) cell collapse into one weighted entry,
    so a resample costs one bincount over ~captures instead of images."""
    cells = strata.num_classes * strata.num_classes
    key = strata.unit_of_image * cells + strata.y_true * strata.num_classes + y_pred
    unique, counts = np.unique(key, return_counts=True)
    return Predictions(y_pred, unique // cells, unique % cells, counts.astype(np.float64))


def resampled_confusion(strata: Strata, resample: Resample, predictions: Predictions) -> np.ndarray:
    """The weighted confusion matrix of one model's predictions on one resample.

    A pseudo-capture transplants its source image's outcome to the target species: right stays
    right; a mistake keeps its predicted column unless that column IS the target species, where it
    would turn into a true positive: it then goes to the source's own species (the same confusion
    between the two species, still a mistake).
    """
    c = strata.num_classes
    weights = resample.unit_draws[predictions.pair_unit] * predictions.pair_count
    flat = np.bincount(predictions.pair_cell, weights=weights, minlength=c * c)
    if len(resample.targets):
        source_true = strata.y_true[resample.sources]
        source_pred = predictions.y_pred[resample.sources]
        right = source_pred == source_true
        column = np.where(right, resample.targets,
                          np.where(source_pred == resample.targets, source_true, source_pred))
        flat = flat + np.bincount(resample.targets * c + column, weights=resample.pseudo_weights,
                                  minlength=c * c)
    return flat.reshape(c, c)


def centred_interval(samples: np.ndarray, point: np.ndarray | float, level: float,
                     bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of `samples` (axis 0) moved so the samples' mean sits on `point`, clipped.
    The previous, smoothed scheme's interval: kept so the benchmarks can show what it covered."""
    lo, hi = percentile_interval(samples, level)
    shift = np.asarray(point) - samples.mean(axis=0)
    return np.clip(lo + shift, *bounds), np.clip(hi + shift, *bounds)


def _check(samples: int, level: float, smoothing: float) -> None:
    if not 0 < level < 1:
        raise UserError(f"bootstrap: level must be in (0, 1), got {level!r}")
    if smoothing < 0:
        raise UserError(f"bootstrap: smoothing must be >= 0, got {smoothing!r}")
    if samples < 0:
        raise UserError(f"bootstrap: samples must be >= 0, got {samples!r}")


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The plain percentile interval of `samples` along axis 0."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail], axis=0)
    return lo, hi


def clopper_pearson(successes: np.ndarray, trials: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial (Clopper-Pearson) interval for a proportion, element-wise; NaN where trials = 0.

    `successes` may be fractional (recall * captures, see the module docstring): the beta quantiles
    are defined for any real successes in [0, trials].
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    alpha = 1 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(x > 0, betaincinv(np.maximum(x, 1e-12), n - x + 1, alpha / 2), 0.0)
        hi = np.where(x < n, betaincinv(x + 1, np.maximum(n - x, 1e-12), 1 - alpha / 2), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


def recall_intervals(strata: Strata, y_pred: np.ndarray, level: float) -> dict[str, Any]:
    """Clopper-Pearson interval on each present species' recall over its test captures."""
    point = scores_from_confusion(confusion_counts(strata.y_true, y_pred, strata.num_classes))
    captures = strata.units_per_class
    lo, hi = clopper_pearson(point["recall"] * captures, captures, level)
    return {"method": f"Clopper-Pearson exact binomial over the species' test {strata.unit}s",
            "estimand": ESTIMANDS["recall"], "recall": point["recall"], "units": captures,
            "ci_low": lo, "ci_high": hi}


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, samples: int, seed: int,
                 groups: Optional[Sequence] = None, level: float = 0.95,
                 min_captures: int = MIN_CAPTURES) -> dict[str, Any]:
    """Intervals for one model's accuracy, well-tested macro F1 and per-species recall (module docstring).

    Resamples `groups` (capture ids) within each species when given, else single images. Returns
    {"samples", "unit", "num_units", "level", "seed", "method", "interval",
    "accuracy": [low, high] (percentile, estimand in "estimands"),
    "macro_f1_well_tested": {"estimate", "ci": [low, high], "min_captures", "classes" (indices),
    "num_classes"} ("ci" None when no species has `min_captures`),
    "recall": {"method", "estimand", "units", "recall", "ci_low", "ci_high"} ([C] arrays, NaN for
    absent species), "estimands"}; {"samples": 0, "unit": None} for samples=0.
    """
    _check(samples, level, 0.0)
    if not isinstance(min_captures, (int, np.integer)) or min_captures < 1:
        raise UserError(f"bootstrap: min_captures must be an int >= 1, got {min_captures!r}")
    if samples == 0:
        return {"samples": 0, "unit": None}
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    strata = make_strata(y_true, num_classes, groups)
    if len(y_pred) != len(strata.y_true):
        raise UserError(f"bootstrap: need one prediction per label, got {len(y_pred)} for {len(strata.y_true)}")
    predictions = prepare_predictions(strata, y_pred)
    well_tested = np.flatnonzero(strata.units_per_class >= min_captures)
    rng = np.random.default_rng(seed)
    cms = np.stack([resampled_confusion(strata, draw_resample(strata, rng, 0.0), predictions)
                    for _ in range(samples)])
    point = confusion_counts(strata.y_true, y_pred, num_classes)
    out = {"samples": int(samples), "unit": strata.unit, "num_units": strata.num_units, "level": level,
           "seed": int(seed), "method": SINGLE_SCHEME,
           "interval": (f"stratified {strata.unit} bootstrap, plain percentile (accuracy, macro F1 of species "
                        f"with >= {min_captures} test {strata.unit}s); Clopper-Pearson (recall per species)"),
           "estimands": {**ESTIMANDS, "macro_f1_well_tested":
                         ESTIMANDS["macro_f1_well_tested"].format(min_captures=min_captures)}}
    lo, hi = percentile_interval(np.trace(cms, axis1=1, axis2=2) / cms.sum(axis=(1, 2)), level)
    out["accuracy"] = [float(lo), float(hi)]
    macro = {"estimate": None, "ci": None, "min_captures": int(min_captures),
             "classes": [int(c) for c in well_tested], "num_classes": int(len(well_tested))}
    if len(well_tested):
        macro["estimate"] = float(scores_from_confusion(point)["f1"][well_tested].mean())
        lo, hi = percentile_interval(scores_from_confusion(cms)["f1"][:, well_tested].mean(axis=1), level)
        macro["ci"] = [float(lo), float(hi)]
    out["macro_f1_well_tested"] = macro
    out["recall"] = recall_intervals(strata, y_pred, level)
    return out


def paired_bootstrap(y_true: np.ndarray, ref_pred: np.ndarray, new_pred: np.ndarray, num_classes: int,
                     samples: int, seed: int, groups: Optional[Sequence] = None, level: float = 0.95,
                     class_groups: Optional[Mapping[str, Sequence[int]]] = None) -> dict[str, Any]:
    """Differences new - ref of ONE pair of models on the same images (one training seed).

    Not a bootstrap any more (the name is the public entry point): a paired randomization test that
    swaps the two models' predictions per capture (`seed_aware.py` says why and what it covers: test
    noise of these two networks, never seed noise). Returns {"samples", "unit", "level", "seed",
    "method"}, "accuracy" and "macro_f1" as {"ref", "new", "delta", "ci": [low, high], "p_value"},
    and "per_class" as arrays over the classes {"f1_ref", "f1_new", "delta", "ci_low", "ci_high",
    "p_value", "q_value", "captures", "too_few", "outside_noise"}: `outside_noise` after
    Benjamini-Hochberg across the species with enough test captures (`too_few` marks the others).
    With `class_groups` ({"head": [...], ...}) it adds "head_macro_f1" ... like "macro_f1".
    """
    if samples < 0:
        raise UserError(f"paired bootstrap: samples must be >= 0, got {samples!r}")
    pair = seed_aware.make_pair(y_true, ref_pred, new_pred, groups)
    result = seed_aware.compare_pairs([pair], num_classes, class_groups or {}, max(samples, 1), seed, level)
    point_ref = confusion_counts(pair.y_true, pair.ref_pred, num_classes)
    point_new = confusion_counts(pair.y_true, pair.new_pred, num_classes)
    f1_ref, f1_new = scores_from_confusion(point_ref)["f1"], scores_from_confusion(point_new)["f1"]
    per_seed = {key: values[0] for key, values in result["per_seed"].items()}
    if samples == 0:  # no draws: point differences only
        per_seed["low"] = per_seed["high"] = per_seed["p"] = np.full(len(per_seed["delta"]), np.nan)
    out: dict[str, Any] = {"samples": int(result["samples"]) if samples else 0,
                           "unit": "capture" if groups is not None else "image",
                           "level": level, "seed": int(seed), "method": seed_aware.SCHEME}
    refs = {"accuracy": (np.trace(point_ref) / point_ref.sum(), np.trace(point_new) / point_new.sum()),
            "macro_f1": (f1_ref.mean(), f1_new.mean())}
    for k, key in enumerate(seed_aware.SUMMARY_METRICS):
        if key in refs or class_groups:
            out[key] = {"delta": float(per_seed["delta"][k]), "p_value": float(per_seed["p"][k]),
                        "ci": [float(per_seed["low"][k]), float(per_seed["high"][k])]}
            if key in refs:
                out[key].update(ref=float(refs[key][0]), new=float(refs[key][1]))
    k0 = len(seed_aware.SUMMARY_METRICS)
    species = result["species"]
    outside = species["outside_noise"] & (samples > 0)
    out["per_class"] = {"f1_ref": f1_ref, "f1_new": f1_new, "delta": per_seed["delta"][k0:],
                        "ci_low": per_seed["low"][k0:], "ci_high": per_seed["high"][k0:],
                        "p_value": species["p"], "q_value": species["q"], "captures": species["captures"],
                        "too_few": ~species["eligible"], "outside_noise": outside}
    return out


def excludes_zero(interval: Sequence[float] | Mapping[str, Any]) -> bool:
    """True when a [low, high] interval lies entirely above or below 0 (a change outside noise)."""
    lo, hi = (interval["ci"] if isinstance(interval, Mapping) else interval)
    return bool(lo > 0 or hi < 0)

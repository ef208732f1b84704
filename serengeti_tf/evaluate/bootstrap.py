"""Bootstrap intervals for accuracy and macro F1, of one model and of the difference between two.

The scheme: a SMOOTHED STRATIFIED CAPTURE BOOTSTRAP with a centred percentile interval.

Why stratified (captures resampled within each species, each species keeping its number of test
captures): the test split's class composition is fixed by the split rule, not drawn at random, and
macro F1 weights every species equally whatever its count. Resampling captures over the whole split
instead leaves a species with one test capture out of ~37% of resamples, where it scores F1 = 0: the
interval then sits below the point estimate (on the paper's test counts a model right on 80% of
images got a point macro F1 outside its own 95% interval in most simulated test sets).

Why captures: frames of one capture are near-duplicates; resampling images would make the interval
too narrow. A capture belongs to the stratum of its majority frame label.

Why smoothed: resampling within a species with one capture always redraws that capture, so its F1
looks certain although it rests on one image (the paper's test split has nine such species). Each
of a species' n resampled slots is therefore, with probability `smoothing / (n + smoothing)`, a
pseudo-capture instead: an image drawn from a random present species (species equally likely, then
an image of it) whose outcome is transplanted to this species (right stays right; a mistake keeps
its predicted column). This is the bootstrap of the per-species confusion row shrunk by
`smoothing` pseudo-captures toward the pooled, class-averaged behaviour of the model; it changes a
species with thousands of captures by a fraction of a percent and gives a one-capture species the
spread of a Bernoulli draw. Default 2 pseudo-captures: on the confusion model where rare species
keep a high precision, 1 reached ~0.89 coverage and 0.5 ~0.83 in simulation, 2 reached 0.92 in the
benchmark. The smoothing shifts the resampled scores toward the pooled behaviour, so the interval
is centred: the percentile interval is moved by (point estimate - mean of the
resampled scores). It contains the point estimate whenever the resampled mean lies inside the
percentile range (always, in the benchmark and tests; clipping to the metric's range keeps it).

What the interval means: a 95% interval for the score the model would get on a test set of the
same species counts drawn from the same population of captures ("population macro F1" of the
per-species confusion behaviour). `benchmarks/evaluation_bootstrap.py` measures its coverage on
the paper's test counts under several confusion models (results in benchmarks/results/); it is an
approximation, not a guarantee, when many species have one or two test captures.

Paired differences (`paired_bootstrap`): not resampled here; a paired randomization test of one
pair of models, and across training seeds a t-interval, in `seed_aware.py` (which says why).

Speed: every resample is a weighted confusion matrix (np.bincount), no per-resample indexing of
the data and no scikit-learn call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from serengeti_tf.errors import UserError
from serengeti_tf.evaluate.metrics import confusion_counts, scores_from_confusion

SCHEME = "stratified_capture_smoothed"
DEFAULT_SMOOTHING = 2.0  # pseudo-captures per species; see the module docstring


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
    """The weighted confusion matrix of one model's predictions on one resample."""
    c = strata.num_classes
    weights = resample.unit_draws[predictions.pair_unit] * predictions.pair_count
    flat = np.bincount(predictions.pair_cell, weights=weights, minlength=c * c)
    if len(resample.targets):
        source_pred = predictions.y_pred[resample.sources]
        right = source_pred == strata.y_true[resample.sources]
        flat = flat + np.bincount(resample.targets * c + np.where(right, resample.targets, source_pred),
                                  weights=resample.pseudo_weights, minlength=c * c)
    return flat.reshape(c, c)


def centred_interval(samples: np.ndarray, point: np.ndarray | float, level: float,
                     bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of `samples` (axis 0) moved so the samples' mean sits on `point`, clipped."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail], axis=0)
    shift = np.asarray(point) - samples.mean(axis=0)
    return np.clip(lo + shift, *bounds), np.clip(hi + shift, *bounds)


def _check(samples: int, level: float, smoothing: float) -> None:
    if not 0 < level < 1:
        raise UserError(f"bootstrap: level must be in (0, 1), got {level!r}")
    if smoothing < 0:
        raise UserError(f"bootstrap: smoothing must be >= 0, got {smoothing!r}")
    if samples < 0:
        raise UserError(f"bootstrap: samples must be >= 0, got {samples!r}")


def _header(strata: Strata, samples: int, seed: int, level: float, smoothing: float) -> dict[str, Any]:
    return {"samples": int(samples), "unit": strata.unit, "num_units": strata.num_units, "level": level,
            "seed": int(seed), "method": SCHEME, "smoothing": float(smoothing),
            "interval": "percentile, centred on the point estimate"}


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, samples: int, seed: int,
                 groups: Optional[Sequence] = None, level: float = 0.95,
                 smoothing: float = DEFAULT_SMOOTHING) -> dict[str, Any]:
    """Intervals for accuracy and headline macro F1 of one model (see the module docstring).

    Resamples `groups` (capture ids) within each species when given, else single images.
    Returns {"samples", "unit", "num_units", "level", "seed", "method", "smoothing", "interval",
    "accuracy": [low, high], "macro_f1": [low, high]}; {"samples": 0, "unit": None} for samples=0.
    """
    _check(samples, level, smoothing)
    if samples == 0:
        return {"samples": 0, "unit": None}
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    strata = make_strata(y_true, num_classes, groups)
    predictions = prepare_predictions(strata, y_pred)
    rng = np.random.default_rng(seed)
    cms = np.stack([resampled_confusion(strata, draw_resample(strata, rng, smoothing), predictions)
                    for _ in range(samples)])
    per_class = scores_from_confusion(cms)
    f1s = per_class["f1"].mean(axis=1)
    accuracies = np.trace(cms, axis1=1, axis2=2) / cms.sum(axis=(1, 2))
    point = confusion_counts(strata.y_true, y_pred, num_classes)
    out = _header(strata, samples, seed, level, smoothing)
    for key, values, estimate in (("accuracy", accuracies, np.trace(point) / point.sum()),
                                  ("macro_f1", f1s, scores_from_confusion(point)["f1"].mean())):
        lo, hi = centred_interval(values, estimate, level, (0.0, 1.0))
        out[key] = [float(lo), float(hi)]
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
    from serengeti_tf.evaluate import seed_aware

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

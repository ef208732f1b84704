"""Paired differences between two models with a seed-aware interval and false-discovery control.

The question: is method NEW better than REF (on accuracy, macro F1, head / medium / tail macro F1,
each species' F1)? Data: for each training seed s, both models' predictions on the same test images.
Two kinds of noise move a difference: which test captures happened to be drawn (TEST-SET noise) and
which network a training seed happened to give (SEED noise).

One seed (`one pair`): a paired RANDOMIZATION test (approximate randomization, Noreen 1989; Yeh 2000
for F-scores): in each of `samples` draws every test capture swaps the two models' predictions with
probability 1/2 (all frames of a capture together), and the difference is recomputed. Under "the two
networks behave alike" each swap is as likely as not, so the draws are the difference's null
distribution, including for a species with one capture (a bootstrap that redraws that capture holds
its outcome fixed and so misses its noise). p = share of draws with |Δ*| >= |Δ|; the interval is
Δ ± the `level` quantile of |Δ*| (it excludes 0 exactly when p < 1 - level), clipped to [-1, 1]. It covers test-set
noise of THESE TWO NETWORKS, never seed noise: it says this network scored differently on this test
set, not that the method is better.

Several seeds (`seed_aware`): with D_s the difference of seed s, the interval is a t-interval over
seeds, mean(D) ± t_{n-1} · SE with
    SE² = max( var_s(D)/n + C ,  V/n + (n-1)/n · C ),
V = mean over seeds of the randomization variance of D_s (test-set noise of one pair), C = mean
covariance between two seeds' D under the SAME swaps (test-set noise the seeds share, because they
are scored on the same captures; clipped at 0). var_s(D) holds seed noise plus the unshared test
noise, so var_s(D)/n + C estimates Var(mean D) without bias; the second term is a floor (the spread
over seeds cannot be smaller than test noise alone, which guards against 2-3 seeds that agree by
chance). Student t with n-1 degrees of freedom: with 2-3 seeds it is wide, which is honest. A t over
seeds rather than a bootstrap over seeds: resampling 2-3 values with replacement gives an interval
that is too narrow (for two seeds it is at most their range).

Species flags: per species the same test (one seed: randomization p, with at least `min_draws`
draws so that a lone species can pass; several seeds: t p-value),
then Benjamini-Hochberg at 1 - level across the species that can get a verdict. A species with fewer
than `min_captures_for_verdict(level)` test captures cannot (even if every capture favoured one model,
the exact paired p-value 2^(1-n) stays above 1 - level): it is listed with its count, not tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import t as student_t

from serengeti_tf.errors import UserError

SCHEME = "paired randomization (capture swaps); seeds: t over per-seed differences + shared test noise"
GROUP_METRICS = ("head_macro_f1", "medium_macro_f1", "tail_macro_f1")
SUMMARY_METRICS = ("accuracy", "macro_f1") + GROUP_METRICS


@dataclass(frozen=True)
class Pair:
    """One seed's two models on the same images: labels, both predictions and capture ids."""
    y_true: np.ndarray
    ref_pred: np.ndarray
    new_pred: np.ndarray
    units: np.ndarray  # capture id (or image index) per image, as strings


def make_pair(y_true: Sequence[int], ref_pred: Sequence[int], new_pred: Sequence[int],
              groups: Optional[Sequence] = None) -> Pair:
    y_true, ref_pred, new_pred = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (y_true, ref_pred, new_pred))
    if not len(ref_pred) == len(new_pred) == len(y_true):
        raise UserError(f"paired differences: need predictions of both models for the same images, got "
                        f"{len(ref_pred)} and {len(new_pred)} for {len(y_true)} labels")
    if len(y_true) == 0:
        raise UserError("paired differences: no examples")
    if groups is not None and len(groups) != len(y_true):
        raise UserError(f"paired differences: need one capture id per image, got {len(groups)} for {len(y_true)}")
    units = (np.asarray(groups).astype(str) if groups is not None
             else np.char.add("image", np.arange(len(y_true)).astype(str)))
    return Pair(y_true, ref_pred, new_pred, units)


def min_captures_for_verdict(level: float) -> int:
    """Smallest number of test captures whose exact paired p-value can reach 1 - level: 2^(1-n) <= alpha."""
    return int(math.ceil(1 + math.log2(1 / (1 - level)) - 1e-12))


def min_draws(num_classes: int, level: float) -> int:
    """Randomization draws needed before Benjamini-Hochberg could flag a lone species: the smallest
    p-value, 1 / (draws + 1), must fall below (1 - level) / num_classes, with a factor 2 of room."""
    return int(math.ceil(2 * num_classes / (1 - level)))


def captures_per_class(pair: Pair, num_classes: int) -> np.ndarray:
    """Test captures per species (a capture counts for its majority frame label, ties to the lower index)."""
    codes, unit_index = np.unique(pair.units, return_inverse=True)
    votes = np.zeros((len(codes), num_classes), dtype=np.int64)
    np.add.at(votes, (unit_index, pair.y_true), 1)
    return np.bincount(votes.argmax(axis=1), minlength=num_classes)


def benjamini_hochberg(p_values: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """(rejected, adjusted p) by the Benjamini-Hochberg step-up rule; NaN p-values are not tested."""
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.flatnonzero(~np.isnan(p))
    rejected = np.zeros(len(p), dtype=bool)
    adjusted = np.full(len(p), np.nan)
    m = len(tested)
    if m == 0:
        return rejected, adjusted
    order = tested[np.argsort(p[tested], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    passing = np.flatnonzero(p[order] <= q * np.arange(1, m + 1) / m)
    if len(passing):
        rejected[order[:passing.max() + 1]] = True
    return rejected, adjusted


def _f1(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Per-class F1 = 2 TP / (support + predicted), 0 when both are 0 (`metrics.scores_from_confusion`)."""
    denominator = support + predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)


def _metric_vectors(ref: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], support: np.ndarray,
                    groups: Mapping[str, Sequence[int]]) -> np.ndarray:
    """[..., K] differences new - ref from (true positives, predicted counts) per class: accuracy,
    macro F1 (all classes), head/medium/tail macro F1 (present classes of the group; NaN when none),
    then each class's F1."""
    delta_f1 = _f1(*new, support) - _f1(*ref, support)
    acc = (new[0].sum(axis=-1) - ref[0].sum(axis=-1)) / support.sum()
    columns = [acc, delta_f1.mean(axis=-1)]
    for name in GROUP_METRICS:
        members = [i for i in groups.get(name.split("_")[0], []) if support[i] > 0]
        columns.append(delta_f1[..., members].mean(axis=-1) if members
                       else np.full(delta_f1.shape[:-1], np.nan))
    return np.concatenate([np.stack(columns, axis=-1), delta_f1], axis=-1)


def _randomization(pairs: Sequence[Pair], num_classes: int, groups: Mapping[str, Sequence[int]],
                   samples: int, seed: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(point [S, K], draws [B, S, K]) of the metric differences; one swap vector per draw over the
    union of capture ids, shared by every seed (same capture, same swap).

    Only images the two models predict differently move when swapped; each moves one count of TP
    (when one of the two is right) and of predicted from one class to another, so a draw is a
    matrix product of the swap indicators with those moves (no confusion matrix per draw)."""
    c = num_classes
    all_units, unit_index = np.unique(np.concatenate([p.units for p in pairs]), return_inverse=True)
    bounds = np.cumsum([0] + [len(p.units) for p in pairs])
    points, moves = [], []
    for s, pair in enumerate(pairs):
        support = np.bincount(pair.y_true, minlength=c).astype(np.float64)
        sides = {}
        for side, pred in (("ref", pair.ref_pred), ("new", pair.new_pred)):
            tp = np.bincount(pair.y_true[pred == pair.y_true], minlength=c).astype(np.float64)
            sides[side] = (tp, np.bincount(pred, minlength=c).astype(np.float64))
        points.append(_metric_vectors(sides["ref"], sides["new"], support, groups))
        differ = np.flatnonzero(pair.ref_pred != pair.new_pred)
        y, ref_pred, new_pred = pair.y_true[differ], pair.ref_pred[differ], pair.new_pred[differ]
        # Swapping image i gives ref the new model's prediction: ref gains these, new loses them.
        rows = np.arange(len(differ))
        tp_move = sparse.csr_matrix((((new_pred == y).astype(np.float64) - (ref_pred == y)), (rows, y)),
                                    shape=(len(differ), c))
        pred_move = sparse.csr_matrix((np.r_[np.ones(len(differ)), -np.ones(len(differ))],
                                       (np.r_[rows, rows], np.r_[new_pred, ref_pred])), shape=(len(differ), c))
        moves.append((sides, support, unit_index[bounds[s]:bounds[s + 1]][differ], tp_move.T.tocsr(),
                      pred_move.T.tocsr()))
    rng = np.random.default_rng(seed)
    draws = np.empty((samples, len(pairs), len(points[0])))
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)  # one fair coin per capture: 8 per random byte
        coins = rng.integers(0, 256, (n, (len(all_units) + 7) // 8), dtype=np.uint8)
        swapped = np.unpackbits(coins, axis=1)[:, :len(all_units)]
        for s, (sides, support, units, tp_move, pred_move) in enumerate(moves):
            w = swapped[:, units].T.astype(np.float64)  # [M, n]
            d_tp, d_pred = (tp_move @ w).T, (pred_move @ w).T
            (tp_ref, pred_ref), (tp_new, pred_new) = sides["ref"], sides["new"]
            draws[start:start + n, s] = _metric_vectors((tp_ref + d_tp, pred_ref + d_pred),
                                                             (tp_new - d_tp, pred_new - d_pred), support, groups)
    return np.stack(points), draws


def _t_quantile(level: float, df: int) -> float:
    return float(student_t.ppf((1 + level) / 2, df))


def _t_p_value(t_stat: np.ndarray, df: int) -> np.ndarray:
    return 2 * student_t.sf(np.abs(t_stat), df)


def compare_pairs(pairs: Sequence[Pair], num_classes: int, groups: Mapping[str, Sequence[int]],
                  samples: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Every difference new - ref of `pairs` (one per training seed, see the module docstring).

    `groups`: class indices of head / medium / tail. Returns
      metrics: names of the K columns (SUMMARY_METRICS, then one per class index)
      per_seed: {"delta", "low", "high", "p"} arrays [S, K] (randomization, test-set noise of each pair)
      seed_aware: {"delta", "low", "high", "p", "se"} arrays [K] (t over seeds; None with one seed)
      species: {"captures", "eligible", "p", "q", "outside_noise"} arrays [C] (BH across eligible species)
      n_seeds, level, samples, min_captures
    """
    if not pairs:
        raise UserError("paired differences: no pairs to compare")
    if not 0 < level < 1:
        raise UserError(f"paired differences: level must be in (0, 1), got {level!r}")
    if samples < 1:
        raise UserError(f"paired differences: need at least 1 randomization draw, got {samples!r}")
    samples = max(int(samples), min_draws(num_classes, level))
    point, draws = _randomization(pairs, num_classes, groups, samples, seed)
    n = len(pairs)
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(draws)
        half = np.quantile(magnitude, level, axis=0)
        p_seed = (1 + np.sum(magnitude >= np.abs(point)[None] - 1e-12, axis=0)) / (samples + 1)
    p_seed = np.where(np.isnan(point), np.nan, p_seed)
    out: dict[str, Any] = {
        "metrics": list(SUMMARY_METRICS) + [f"class_{i}" for i in range(num_classes)],
        "per_seed": {"delta": point, "low": np.maximum(point - half, -1.0), "high": np.minimum(point + half, 1.0),
                     "p": p_seed},
        "seed_aware": None, "n_seeds": n, "level": level, "samples": int(samples),
        "min_captures": min_captures_for_verdict(level), "scheme": SCHEME}
    if n > 1:
        with np.errstate(invalid="ignore"):
            mean = point.mean(axis=0)
            spread = point.var(axis=0, ddof=1)
            centred = draws - draws.mean(axis=0, keepdims=True)
            cov = np.einsum("bsk,btk->stk", centred, centred) / samples  # [S, S, K]
            within = np.mean(np.diagonal(cov, axis1=0, axis2=1), axis=-1)  # V
            shared = np.maximum((cov.sum(axis=(0, 1)) - np.trace(cov, axis1=0, axis2=1)) / (n * (n - 1)), 0.0)  # C
            se = np.sqrt(np.maximum(spread / n + shared, within / n + (n - 1) / n * shared))
            width = _t_quantile(level, n - 1) * se
            t_stat = np.where(se > 0, mean / np.where(se > 0, se, 1), 0.0)
            p = np.where(np.isnan(mean), np.nan, _t_p_value(t_stat, n - 1))
        out["seed_aware"] = {"delta": mean, "low": np.maximum(mean - width, -1.0),
                             "high": np.minimum(mean + width, 1.0), "p": p, "se": se}
    captures = captures_per_class(pairs[0], num_classes)
    eligible = captures >= out["min_captures"]
    k0 = len(SUMMARY_METRICS)
    p_class = (out["seed_aware"] or out["per_seed"])["p"]
    p_class = p_class[k0:] if n > 1 else p_class[0, k0:]
    rejected, adjusted = benjamini_hochberg(np.where(eligible, p_class, np.nan), 1 - level)
    out["species"] = {"captures": captures, "eligible": eligible, "p": np.where(eligible, p_class, np.nan),
                      "q": adjusted, "outside_noise": rejected}
    return out


def verdict_word(low: float, high: float, seed_aware: bool) -> str:
    """`better` / `worse` only when a seed-aware interval excludes 0; `no verdict` without one."""
    if not seed_aware or low is None or high is None or np.isnan(low) or np.isnan(high):
        return "no verdict"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no difference shown"


def summary_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per summary metric: delta, low, high, p, verdict (seed-aware when n_seeds > 1)."""
    seed_aware = result["seed_aware"]
    rows = []
    for k, name in enumerate(SUMMARY_METRICS):
        source = seed_aware if seed_aware is not None else {key: v[0] for key, v in result["per_seed"].items()}
        delta, low, high = (float(source[key][k]) for key in ("delta", "low", "high"))
        rows.append({"metric": name, "delta": delta, "low": low, "high": high, "p": float(source["p"][k]),
                     "verdict": verdict_word(low, high, seed_aware is not None)})
    return pd.DataFrame(rows)

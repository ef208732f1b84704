"""The demo's last words: baseline vs the best two-phase model, read from the report's verdict.json.

The experiment report writes `verdict.json` (evaluate/reporting.py):

    {"level": 0.95, "n_seeds": int, "seed_aware": bool, "groups": {"rule", "head_min", "tail_max"},
     "comparisons": [{"comparison", "reference", "model", "phase", "n_seeds", "seed_aware",
                      "metrics": {"accuracy": M, "macro_f1": M, "tail_macro_f1": M}, "sentence"}]}
    M = {"delta": float, "low": float|null, "high": float|null,
         "verdict": "better" | "worse" | "no difference shown" | "no verdict"}

`verdict_lines` picks the comparisons against the baseline at phase 2 and, of those, the one with
the largest macro F1 delta (the best two-phase model, whatever the sign), and says in three lines
its delta macro F1 and tail macro F1 with their intervals and what they mean. Pure: a dict in,
lines out; `read_verdict` reads the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from serengeti_tf.io_utils import read_json

VERDICT_JSON = "verdict.json"

_MEANING = {"better": "higher than the baseline's beyond the noise the interval covers",
            "worse": "lower than the baseline's beyond the noise the interval covers",
            "no difference shown": "not distinguishable from the baseline's (the interval includes 0)",
            "no verdict": "not judged (no interval could be computed)"}


def read_verdict(report_dir: str | Path) -> Optional[dict]:
    """The report's verdict.json, or None when the report did not write one."""
    path = Path(report_dir) / VERDICT_JSON
    return read_json(path) if path.is_file() else None


def best_two_phase(verdict: dict) -> Optional[dict]:
    """Of the comparisons of a phase-2 model against the baseline, the one with the largest macro F1
    delta; None when there is none."""
    candidates = [c for c in verdict.get("comparisons", [])
                  if int(c.get("phase", 0)) == 2 and "baseline" in str(c.get("reference", "")).lower()]
    return max(candidates, key=lambda c: c["metrics"]["macro_f1"]["delta"], default=None)


def _delta(metric: dict) -> str:
    low, high = metric.get("low"), metric.get("high")
    interval = f" [{low:+.3f}, {high:+.3f}]" if low is not None and high is not None else " [no interval]"
    return f"{metric['delta']:+.3f}{interval} ({metric['verdict']})"


def verdict_lines(verdict: Optional[dict], report_dir: str | Path) -> list[str]:
    """Three lines (or one saying why there are none): delta macro F1 and delta tail macro F1 of the
    best two-phase model against the baseline, with their intervals, and what that means."""
    if verdict is None:
        return [f"verdict: no {VERDICT_JSON} in {report_dir}; read the comparison in the report"]
    best = best_two_phase(verdict)
    if best is None:
        return [f"verdict: {VERDICT_JSON} has no phase-2 model compared with the baseline; see the report"]
    n_seeds = int(best.get("n_seeds", verdict.get("n_seeds", 1)))
    seed_aware = bool(best.get("seed_aware", verdict.get("seed_aware", False)))
    level = float(verdict.get("level", 0.95))
    noise = (f"{level:.0%} intervals over {n_seeds} seeds (seed and test-image noise)" if seed_aware else
             f"{level:.0%} intervals over test images of {n_seeds} seed(s); seed noise not included")
    macro, tail = best["metrics"]["macro_f1"], best["metrics"]["tail_macro_f1"]
    groups = verdict.get("groups", {})
    tail_words = f"tail = train count < {groups['tail_max']}" if "tail_max" in groups else "tail species"
    model = f"{best.get('model', '?')} phase 2"
    sentence = str(best.get("sentence") or "").strip()
    meaning = (f"in words: {model}'s macro F1 is {_MEANING.get(macro['verdict'], macro['verdict'])}; on the "
               f"tail species it is {_MEANING.get(tail['verdict'], tail['verdict'])}"
               + (f". {sentence}" if sentence else ""))
    return [f"verdict: baseline vs {model} (best two-phase model by macro F1; {noise}): "
            f"Δ macro F1 {_delta(macro)}",
            f"verdict: Δ tail macro F1 ({tail_words}) {_delta(tail)}",
            meaning]

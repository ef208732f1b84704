"""Benchmark: does the default `serengeti-tf demo` keep its time promise on this machine?

Runs the installed console script exactly as the README's quick start does (`serengeti-tf demo
--out <fresh folder>`, default `--minutes 10`) in a subprocess and records:
  - the wall time of the whole command (process start to exit, TensorFlow import included),
  - the settings the demo chose and why (from its demo.json), and its own time estimate,
  - the machine's measured training speed (the demo's probe: img/s of ResNet-18 at each probed size,
    measured in this same run) and the load average before/after (the machine is shared),
  - the demo's headline numbers (runs.csv), so the README's figure can be checked against them,
  - from the same run's report: the baseline's accuracy and head / tail macro F1 (mean over seeds,
    report/runs.csv), and the best two-phase model's delta macro F1 and delta tail macro F1 against
    the baseline with their intervals (report/verdict.json; when the report wrote none, the
    per-seed paired bootstrap of macro F1 in report/paired_differences.csv, and it says so).
Targets: wall time <= budget + 20% (issue 12); baseline accuracy >= 0.85, every species >= 5 test
images, train imbalance >= 50 (issue 21).

Usage: python benchmarks/demo_time.py [--minutes 10] [--keep DIR]
Writes benchmarks/results/demo_time.json and .md. Takes about the budget (default 10 min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import use_checkout, write_results


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("serengeti-tf")
    return [str(script)] if script.exists() else [sys.executable, "-m", "serengeti_tf_cli.main"]


def run(minutes: float | None, out: Path) -> dict:
    command = console_script() + ["demo", "--out", str(out)] + (["--minutes", f"{minutes:g}"] if minutes else [])
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"demo failed ({result.returncode}):\n{result.stderr[-3000:]}")
    record = json.loads((out / "demo.json").read_text())
    runs = pd.read_csv(out / "experiment" / "runs.csv")
    report = out / "experiment" / "report"
    error_like = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.startswith(("E0000", "W0000", "WARNING:tensorflow")) or "CUDA error" in line]
    return {"command": " ".join(command[-4:] if minutes else command[-3:]), "wall_seconds": round(wall, 1),
            "budget_minutes": record["minutes"], "within_budget": wall <= record["minutes"] * 60,
            "within_budget_plus_20_percent": wall <= 1.2 * record["minutes"] * 60,
            "demo_internal_wall_seconds": record.get("wall_seconds"),
            "settings": record["settings"], "throughput": record.get("throughput"),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "error_like_lines": error_like[:5],
            "runs": runs[["sampler", "phase", "model", "accuracy", "macro_f1"]].to_dict(orient="records"),
            "baseline": baseline_scores(report), "best_two_phase": best_two_phase_delta(report),
            "data": data_checks(out),
            "verdict_lines": [line for line in result.stdout.splitlines()
                              if line.startswith(("verdict:", "in words:"))],
            "stdout_tail": result.stdout.splitlines()[-12:]}


def baseline_scores(report: Path) -> dict:
    """The baseline's accuracy and head / tail macro F1, mean over its seeds (report/runs.csv)."""
    table = pd.read_csv(report / "runs.csv")
    base = table[(table["model"] == "baseline")]
    return {"seeds": int(len(base)), **{name: round(float(base[name].mean()), 4)
                                        for name in ("accuracy", "macro_f1", "head_macro_f1", "tail_macro_f1")}}


def best_two_phase_delta(report: Path) -> dict:
    """Baseline vs the best two-phase model (largest delta macro F1), with intervals."""
    use_checkout()
    from serengeti_tf.demo.verdict import best_two_phase, read_verdict

    verdict = read_verdict(report)
    if verdict is not None:
        best = best_two_phase(verdict)
        if best is not None:
            return {"source": "verdict.json", "model": f"{best['model']} phase 2", "n_seeds": best.get("n_seeds"),
                    "seed_aware": best.get("seed_aware"), "level": verdict.get("level"),
                    **{name: best["metrics"][name] for name in ("macro_f1", "tail_macro_f1")}}
    paired = pd.read_csv(report / "paired_differences.csv")
    rows = paired[paired["comparison"].str.endswith("phase 2 vs baseline")]
    if rows.empty:
        return {"source": "none"}
    means = rows.groupby("comparison")["delta_macro_f1"].mean()
    best = rows[rows["comparison"] == means.idxmax()]
    return {"source": "paired_differences.csv (no verdict.json: per-seed test-image intervals, no seed noise)",
            "model": means.idxmax().replace(" vs baseline", ""), "n_seeds": int(len(best)),
            "macro_f1": [{"seed": int(r.seed), "delta": round(float(r.delta_macro_f1), 4),
                          "low": round(float(r.delta_macro_f1_ci_low), 4),
                          "high": round(float(r.delta_macro_f1_ci_high), 4)}
                         for r in best.itertuples()]}


def data_checks(out: Path) -> dict:
    """Train imbalance and the fewest test images of any species, from the prepared counts."""
    counts = pd.read_csv(out / "prepared" / "counts.csv")
    return {"species": int(len(counts)), "min_test_images": int(counts["test"].min()),
            "train_imbalance": round(float(counts["train"].max() / counts["train"].min()), 1)}


def _interval(m: dict) -> str:
    low, high = m.get("low"), m.get("high")
    return f"{m['delta']:+.4f} [{low:+.4f}, {high:+.4f}]" if low is not None and high is not None else \
        f"{m['delta']:+.4f} [no interval]"


def markdown(r: dict) -> str:
    s, t = r["settings"], r["throughput"] or {}
    ips = ", ".join(f"{k} px: {v} img/s" for k, v in t.get("train_images_per_second", {}).items())
    lines = ["# demo time", "",
             f"{r['timestamp']}; `{r['command']}` on {r['machine']}; load average before/after: "
             f"{r['load_average_before'][0]} / {r['load_average_after'][0]} (shared machine).", "",
             "| budget | wall time | within budget | within budget + 20% | demo's own estimate |",
             "| ---: | ---: | --- | --- | ---: |",
             f"| {r['budget_minutes']:g} min | {r['wall_seconds'] / 60:.1f} min | {r['within_budget']} | "
             f"{r['within_budget_plus_20_percent']} | {s['estimated_seconds'] / 60:.1f} min |", "",
             f"Measured in this run by the demo's probe: ResNet-18 training at {ips or 'n/a'}; checkpoint "
             f"save {t.get('save_seconds', float('nan')):.1f} s; demo images drawn at "
             f"{t.get('render_images_per_second', float('nan')):.0f} img/s.", "",
             f"Settings chosen: SYNTHETIC long tail of {s['species']} species ({s['input_size']} px inputs, stored "
             f"{s['image_size']} px), samplers {', '.join(s['samplers'])}, {s['seeds']} seed(s), {s['epochs']} "
             f"epochs per run.", "",
             f"Why (the demo's words): {s['reason']}.", "",
             "| model | phase | accuracy | macro F1 |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {row['model']} | {row['phase']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} |"
              for row in r["runs"]]
    d, b, best = r["data"], r["baseline"], r["best_two_phase"]
    lines += ["", f"Data (prepared counts): {d['species']} species, train imbalance {d['train_imbalance']}x, "
              f"fewest test images of a species {d['min_test_images']}.", "",
              f"Baseline (mean over {b['seeds']} seed(s)): accuracy {b['accuracy']:.4f}, macro F1 {b['macro_f1']:.4f}, "
              f"head macro F1 {b['head_macro_f1']:.4f}, tail macro F1 {b['tail_macro_f1']:.4f}.", ""]
    if best.get("source") == "verdict.json":
        lines += [f"Best two-phase model ({best['model']}, {best['n_seeds']} seed(s), seed-aware {best['seed_aware']}, "
                  f"level {best['level']}): Δ macro F1 {_interval(best['macro_f1'])} ({best['macro_f1']['verdict']}), "
                  f"Δ tail macro F1 {_interval(best['tail_macro_f1'])} ({best['tail_macro_f1']['verdict']}).", ""]
    elif best.get("source") != "none":
        lines += [f"Best two-phase model ({best['model']}; from {best['source']}): Δ macro F1 per seed "
                  + "; ".join(f"seed {m['seed']}: {_interval(m)}" for m in best["macro_f1"]) + ".", ""]
    lines += ["The demo's last lines:", ""] + [f"    {line}" for line in r["verdict_lines"]] + [""]
    lines += ["", "Error-looking lines (E0000/W0000/WARNING:tensorflow/CUDA) in the output: "
              f"{len(r['error_like_lines'])}"
              + (f" (first: `{r['error_like_lines'][0]}`)" if r["error_like_lines"] else ""), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="budget; default: the demo's default")
    parser.add_argument("--keep", type=Path, default=None, help="demo folder to keep (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="demo-time-"))
    out = args.keep or folder / "demo_out"
    try:
        result = run(args.minutes, out)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    result.update({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}"})
    write_results("demo_time", result, markdown(result))


if __name__ == "__main__":
    main()

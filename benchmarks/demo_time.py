"""Benchmark: does the default `serengeti-tf demo` keep its time promise on this machine?

Runs the installed console script exactly as the README's quick start does (`serengeti-tf demo
--out <fresh folder>`, default `--minutes 10`) in a subprocess and records:
  - the wall time of the whole command (process start to exit, TensorFlow import included),
  - the settings the demo chose and why (from its demo.json), and its own time estimate,
  - the machine's measured training speed (the demo's probe: img/s of ResNet-18 at each probed size,
    measured in this same run) and the load average before/after (the machine is shared),
  - the demo's headline numbers (runs.csv), so the README's figure can be checked against them.
Target (issue 12): wall time <= budget + 20%.

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
from _common import write_results


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
    error_like = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.startswith(("E0000", "W0000")) or "CUDA error" in line]
    return {"command": " ".join(command[-4:] if minutes else command[-3:]), "wall_seconds": round(wall, 1),
            "budget_minutes": record["minutes"], "within_budget": wall <= record["minutes"] * 60,
            "within_budget_plus_20_percent": wall <= 1.2 * record["minutes"] * 60,
            "demo_internal_wall_seconds": record.get("wall_seconds"),
            "settings": record["settings"], "throughput": record.get("throughput"),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "error_like_lines": error_like[:5],
            "runs": runs[["sampler", "phase", "model", "accuracy", "macro_f1"]].to_dict(orient="records"),
            "stdout_tail": result.stdout.splitlines()[-12:]}


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
             f"Settings chosen: data scale {s['scale']} ({s['input_size']} px inputs, stored {s['image_size']} px), "
             f"samplers {', '.join(s['samplers'])}, {s['epochs']} epochs per run.", "",
             f"Why (the demo's words): {s['reason']}.", "",
             "| model | phase | accuracy | macro F1 |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {row['model']} | {row['phase']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} |"
              for row in r["runs"]]
    lines += ["", f"Error-looking lines (E0000/W0000/CUDA) in the output: {len(r['error_like_lines'])}"
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

"""Benchmark: latency (batch 1) and throughput (batch 64) of the exported models on this CPU.

Compared in one run, on the same uint8 images (256 x 341, a stored-size 4:3 frame; the eval view
inside every model crops and resizes them to 224 px):
  - keras (baseline): the run's plain Keras model behind `pipeline.eval_transform` in one tf.function
    (what `predict` runs per batch, minus file decoding)
  - saved_model:      `serengeti-tf export --format saved_model`, signature serving_default
  - tflite_float32 / tflite_dynamic_range: `--format tflite`, TFLite interpreter (XNNPACK), all cores

The model is the paper's ResNet-18 (52 classes, 224 px) with random weights: speed does not depend
on the weight values. Latency: median and p90 of single-image calls after warm-up. Throughput:
images/s over whole batches of 64. Ratios are against the Keras baseline of the same run.

Usage: python benchmarks/export_latency.py [--repeats-1 30] [--repeats-64 3]
Writes benchmarks/results/export_latency.json and .md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_results

INPUT_SIZE = 224
IMAGE_SHAPE = (256, 341, 3)
CLASSES = [f"species{i:02d}" for i in range(52)]


def make_run(run: Path) -> None:
    """A minimal run folder: model.keras, class_map.json, lineage.json (no dataset: no agreement check)."""
    import keras

    from serengeti_tf.io_utils import write_json
    from serengeti_tf.models.resnet import build_resnet18, save_model

    keras.utils.set_random_seed(0)
    run.mkdir(parents=True, exist_ok=True)
    save_model(build_resnet18(len(CLASSES), INPUT_SIZE), run / "model.keras")
    write_json(run / "class_map.json", {"num_classes": len(CLASSES), "classes": [
        {"index": i, "name": n, "paper_name": n} for i, n in enumerate(CLASSES)]})
    write_json(run / "lineage.json", {"phase": 1, "sampler": "none", "seed": 0})


def timed(runner, images: np.ndarray, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        runner(images)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(images)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-1", type=int, default=30, help="timed batch-1 calls per model")
    parser.add_argument("--repeats-64", type=int, default=3, help="timed batch-64 calls per model")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from serengeti_tf import config as cfg
    from serengeti_tf.models import export
    from serengeti_tf.models.resnet import load_model

    rng = np.random.default_rng(0)
    batch64 = rng.integers(0, 256, (64, *IMAGE_SHAPE), dtype=np.uint8)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="export-bench-") as scratch:
        root = Path(scratch)
        make_run(root / "run")
        sizes, export_seconds = {}, {}
        for fmt in ("saved_model", "tflite"):
            config = cfg.Config()
            config.export.format = fmt
            config.export.agreement_images = 0
            start = time.perf_counter()
            report = export.export_run(root / "run", root / fmt, config, print_fn=lambda _line: None)
            export_seconds[fmt] = round(time.perf_counter() - start, 1)
            sizes.update({name: item["bytes"] for name, item in report["artifacts"].items()})
        threads = os.cpu_count()
        runners = {
            "keras": export.keras_runner(load_model(root / "run" / "model.keras")),
            "saved_model": export.saved_model_runner(root / "saved_model" / "saved_model"),
            "tflite_float32": export.tflite_runner(root / "tflite" / "model_float32.tflite", threads),
            "tflite_dynamic_range": export.tflite_runner(root / "tflite" / "model_dynamic_range.tflite", threads),
        }
        rows = {}
        for name, runner in runners.items():
            single = timed(runner, batch64[:1], args.repeats_1, warmup=3)
            batch = timed(runner, batch64, args.repeats_64, warmup=1)
            ordered = sorted(single)
            rows[name] = {"latency_ms_median": round(1000 * statistics.median(single), 2),
                          "latency_ms_p90": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 2),
                          "throughput_img_s_batch64": round(64 / statistics.median(batch), 1),
                          "file_bytes": sizes.get(name)}
            print(f"{name}: {rows[name]}", flush=True)
    base = rows["keras"]
    for row in rows.values():
        row["latency_vs_keras"] = round(row["latency_ms_median"] / base["latency_ms_median"], 3)
        row["throughput_vs_keras"] = round(row["throughput_img_s_batch64"] / base["throughput_img_s_batch64"], 3)
    result = {"benchmark": "export_latency", "model": f"ResNet-18, {len(CLASSES)} classes, {INPUT_SIZE} px",
              "input": f"uint8 {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} RGB (eval view inside the model)",
              "repeats_batch1": args.repeats_1, "repeats_batch64": args.repeats_64, "tflite_threads": threads,
              "export_seconds": export_seconds, "results": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_before": [round(x, 2) for x in load_before],
                          "load_average_after": [round(x, 2) for x in os.getloadavg()],
                          "note": "shared 2-core machine, other jobs running: absolute numbers are noisy; "
                                  "compare the ratios measured in the same run"}}
    lines = ["# Export latency and throughput (CPU)", "",
             f"{result['model']}; input {result['input']}; batch-1 latency = median (p90) of "
             f"{args.repeats_1} calls, batch-64 throughput = median of {args.repeats_64} batches; TFLite with "
             f"{threads} threads (XNNPACK). Load average before/after: {result['machine']['load_average_before']} / "
             f"{result['machine']['load_average_after']}. {result['machine']['note']}.", "",
             "| model | file (MB) | latency, batch 1 (ms) | vs keras | throughput, batch 64 (img/s) | vs keras |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        size = "–" if row["file_bytes"] is None else f"{row['file_bytes'] / 1e6:.1f}"
        lines.append(f"| {name} | {size} | {row['latency_ms_median']} ({row['latency_ms_p90']}) | "
                     f"{row['latency_vs_keras']}× | {row['throughput_img_s_batch64']} | "
                     f"{row['throughput_vs_keras']}× |")
    write_results("export_latency", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: latency (batch 1), throughput (batch 64) and top-1 agreement of the exported models on this CPU.

Compared in one run, on the same uint8 images (256 x 341, a stored-size 4:3 frame; the eval view
inside every model crops and resizes them to 224 px):
  - keras (baseline): the run's plain Keras model behind `pipeline.eval_transform` in one tf.function
    (what `predict` runs per batch, minus file decoding)
  - saved_model:      `serengeti-tf export --format saved_model`, signature serving_default
  - tflite_float32 / tflite_dynamic_range: `--format tflite`, any input size
  - tflite_fixed_float32 / tflite_int8: `--format tflite`, fixed input [1, 224, 224, 3]; they get the
    frame already fitted to 224 x 224 (`export.fit_to`, done outside the timing: the other models do
    that crop and resize inside) and one call per image for a batch of 64
TFLite runs on LiteRT (`ai-edge-litert`) when installed (else tf.lite.Interpreter), all cores.

The model is the paper's ResNet-18 (224 px) trained here for a few steps on generated data whose
classes are trivially separable (`testing.write_tiny_dataset`: hue and stripe frequency), so its
predictions are decided: the agreement column is each export's top-1 agreement with the Keras model
on the whole generated test split (`export_report.json`; target >= 99%), and the int8 variant is
calibrated on the train split as `export` does. Speed does not depend on the weight values.
Latency: median and p90 of single-image calls after warm-up. Throughput: images/s over whole
batches of 64. Ratios are against the Keras baseline of the same run.

Usage: python benchmarks/export_latency.py [--repeats-1 30] [--repeats-64 3] [--train-steps 48]
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
from _common import use_checkout, write_results

INPUT_SIZE = 224
IMAGE_SHAPE = (256, 341, 3)
STORED = 256  # the generated dataset's (square) stored size
CLASSES = [f"species{i:02d}" for i in range(10)]
TRAIN_PER_CLASS, TEST_PER_CLASS = 24, 20


def show(event) -> None:
    """Progress events as the CLI prints them, flushed (the benchmark's log is read while it runs)."""
    from serengeti_tf_cli.progress import event_line

    print(event_line(event), flush=True)


def train_run(root: Path, steps: int, on_event) -> tuple[Path, dict]:
    """The generated dataset and a ResNet-18 run trained on it; the run's decisiveness on the test split."""
    import tensorflow as tf

    from serengeti_tf import config as cfg
    from serengeti_tf.data import dataset as ds_reader
    from serengeti_tf.data import pipeline
    from serengeti_tf.models.resnet import load_model
    from serengeti_tf.testing import write_tiny_dataset
    from serengeti_tf.train import training

    dataset = write_tiny_dataset(root / "ds", {name: TRAIN_PER_CLASS for name in CLASSES}, val_per_class=2,
                                 test_per_class=TEST_PER_CLASS, image_size=STORED)
    config = cfg.Config()
    config.model.input_size = INPUT_SIZE
    config.train.batch_size = 16
    config.train.epochs = 4
    config.train.steps_per_epoch = max(1, steps // config.train.epochs)
    config.eval.batch_size = 16
    config.sampler.shuffle_buffer = 64
    start = time.perf_counter()
    run = training.train(config, dataset, root / "run", on_event=on_event)
    seconds = time.perf_counter() - start
    model = load_model(run / "model.keras")
    views, labels = [], []
    for record in tf.data.TFRecordDataset(ds_reader.split_files(dataset, "test")):
        jpeg, label = pipeline._parse_image_label(record)[:2]
        views.append(pipeline.eval_transform(tf.io.decode_jpeg(jpeg, channels=3), INPUT_SIZE))
        labels.append(int(label))
    probabilities = tf.nn.softmax(model.predict(tf.stack(views), batch_size=16, verbose=0)).numpy()
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    return run, {"train_steps": config.train.epochs * config.train.steps_per_epoch,
                 "batch_size": config.train.batch_size, "train_seconds": round(seconds, 1),
                 "test_images": len(labels),
                 "test_accuracy": round(float(np.mean(probabilities.argmax(axis=1) == np.array(labels))), 4),
                 "median_top1_margin": round(float(np.median(top2[:, 1] - top2[:, 0])), 4),
                 "min_top1_margin": round(float(np.min(top2[:, 1] - top2[:, 0])), 4)}


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
    parser.add_argument("--train-steps", type=int, default=48, help="training steps of the benchmark's model")
    parser.add_argument("--calibration-images", type=int, default=200, help="int8 calibration sample size")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    use_checkout()

    from serengeti_tf import config as cfg
    from serengeti_tf.models import export
    from serengeti_tf.models.resnet import load_model

    rng = np.random.default_rng(0)
    batch64 = rng.integers(0, 256, (64, *IMAGE_SHAPE), dtype=np.uint8)
    fitted64 = np.stack([export.fit_to(image, INPUT_SIZE, INPUT_SIZE) for image in batch64])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="export-bench-") as scratch:
        root = Path(scratch)
        run, trained = train_run(root, args.train_steps, on_event=show)
        print(f"trained: {trained}", flush=True)
        sizes, export_seconds, agreements, io, calibration = {}, {}, {}, {}, None
        for fmt in ("saved_model", "tflite"):
            config = cfg.Config()
            config.export.format = fmt
            config.export.agreement_images = len(CLASSES) * TEST_PER_CLASS
            config.export.calibration_images = args.calibration_images
            start = time.perf_counter()
            report = export.export_run(run, root / fmt, config, on_event=show)
            export_seconds[fmt] = round(time.perf_counter() - start, 1)
            for name, item in report["artifacts"].items():
                sizes[name] = item["bytes"]
                agreements[name] = {"top1_agreement": item["top1_agreement"], "max_abs_diff": item["max_abs_diff"]}
                io[name] = {key: item[key] for key in ("input", "output") if key in item}
                calibration = item.get("calibration", calibration)
        threads, interpreter = os.cpu_count(), export.interpreter_name()
        tflite = {name: export.tflite_runner(root / "tflite" / f"model_{name[len('tflite_'):]}.tflite", threads)
                  for name in agreements if name.startswith("tflite_")}
        runners = {"keras": export.keras_runner(load_model(run / "model.keras")),
                   "saved_model": export.saved_model_runner(root / "saved_model" / "saved_model"), **tflite}
        rows = {}
        for name, runner in runners.items():
            fixed = name in {f"tflite_{v}" for v in export.FIXED_SHAPE_VARIANTS}
            images = fitted64 if fixed else batch64
            single = timed(runner, images[:1], args.repeats_1, warmup=3)
            batch = timed(runner, images, args.repeats_64, warmup=1)
            ordered = sorted(single)
            rows[name] = {"latency_ms_median": round(1000 * statistics.median(single), 2),
                          "latency_ms_p90": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 2),
                          "throughput_img_s_batch64": round(64 / statistics.median(batch), 1),
                          "file_bytes": sizes.get(name), **agreements.get(name, {}), **io.get(name, {})}
            print(f"{name}: {rows[name]}", flush=True)
    base = rows["keras"]
    for row in rows.values():
        row["latency_vs_keras"] = round(row["latency_ms_median"] / base["latency_ms_median"], 3)
        row["throughput_vs_keras"] = round(row["throughput_img_s_batch64"] / base["throughput_img_s_batch64"], 3)
    result = {"benchmark": "export_latency", "model": f"ResNet-18, {len(CLASSES)} classes, {INPUT_SIZE} px",
              "input": f"uint8 {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} RGB (eval view inside the model); the fixed-shape "
                       f"variants get it fitted to {INPUT_SIZE}x{INPUT_SIZE} outside the timing",
              "trained": trained, "agreement_images": len(CLASSES) * TEST_PER_CLASS, "calibration": calibration,
              "interpreter": interpreter, "repeats_batch1": args.repeats_1, "repeats_batch64": args.repeats_64,
              "tflite_threads": threads, "export_seconds": export_seconds, "results": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_before": [round(x, 2) for x in load_before],
                          "load_average_after": [round(x, 2) for x in os.getloadavg()],
                          "note": "shared 2-core machine (see the load averages): absolute numbers vary "
                                  "from day to day; compare the ratios measured in the same run"}}
    lines = ["# Export latency, throughput and agreement (CPU)", "",
             f"{result['model']}, trained {trained['train_steps']} steps (batch {trained['batch_size']}) on "
             f"generated, trivially separable data: test accuracy {trained['test_accuracy']:.1%}, median top-1 "
             f"margin {trained['median_top1_margin']} (min {trained['min_top1_margin']}). Input "
             f"{result['input']}; batch-1 latency = median (p90) of {args.repeats_1} calls, batch-64 throughput "
             f"= median of {args.repeats_64} batches (fixed-shape variants: 64 single calls); TFLite on "
             f"{interpreter} with {threads} threads. Agreement: top-1 agreement with the Keras model on the "
             f"{result['agreement_images']} generated test images (target >= 99%), from export_report.json; "
             f"int8 calibrated on {calibration and calibration['images']} train images (seed "
             f"{calibration and calibration['seed']}). Load average before/after: "
             f"{result['machine']['load_average_before']} / {result['machine']['load_average_after']}. "
             f"{result['machine']['note']}.", "",
             "| model | file (MB) | latency, batch 1 (ms) | vs keras | throughput, batch 64 (img/s) | vs keras "
             "| top-1 agreement | max abs diff |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        size = "–" if row["file_bytes"] is None else f"{row['file_bytes'] / 1e6:.1f}"
        top1 = "–" if row.get("top1_agreement") is None else f"{row['top1_agreement']:.1%}"
        diff = "–" if row.get("max_abs_diff") is None else f"{row['max_abs_diff']:.1e}"
        lines.append(f"| {name} | {size} | {row['latency_ms_median']} ({row['latency_ms_p90']}) | "
                     f"{row['latency_vs_keras']}× | {row['throughput_img_s_batch64']} | "
                     f"{row['throughput_vs_keras']}× | {top1} | {diff} |")
    write_results("export_latency", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

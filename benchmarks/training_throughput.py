"""Training throughput of ResNet-18 on this machine: phase 1, and phase 2 slow vs fast path.

Run: `python benchmarks/training_throughput.py` (a few minutes on 2 CPU cores). Writes
`benchmarks/results/training_throughput.json` and `.md`.

Every measurement runs in its own subprocess so its peak memory (ru_maxrss) is its own.

- Phase 1 (per input size): images/s (batch / median step time) of `model.fit` on the real tf.data pipeline (TFRecord ->
  JPEG decode -> random-resized-crop augmentation -> batch) of a generated dataset stored at
  256 px, against a plain baseline in the same run: the same model fed in-memory tensors (no input
  pipeline). Warm-up steps (tracing) are excluded.
- Phase 2 (per input size): the slow path (frozen backbone, full forward pass every step, images
  through the pipeline without augmentation) against the fast path (one pooled-feature pass over
  the train split, then the head alone on cached features). The fast path's cost per epoch is
  `(feature pass + E head epochs) / E`, E = the epochs run (config default 30; also E = 10).
  Validation passes are left out of both (the fast path caches val features the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, write_results

NUM_CLASSES = 52  # the paper's class count: the head has 26,676 weights


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _config(size: int, batch: int):
    from serengeti_tf import config as cfg

    config = cfg.Config()
    config.model.input_size = size
    config.train.batch_size = batch
    config.eval.batch_size = batch
    config.sampler.shuffle_buffer = 256
    return config


class _StepTimer:
    """Wall-clock time of the batches after `warmup` (tracing and first-step costs excluded)."""

    def __init__(self, warmup: int):
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                timer.stamps.append(time.perf_counter())

        self.warmup = warmup
        self.stamps: list[float] = []
        self.callback = Callback()

    def seconds(self) -> float:
        return self.stamps[-1] - self.stamps[self.warmup - 1]

    def median_step(self) -> float:
        """Median seconds per timed step: robust to load spikes from other processes."""
        import statistics

        return statistics.median(b - a for a, b in zip(self.stamps[self.warmup - 1:-1], self.stamps[self.warmup:]))


def job_phase1(dataset_dir: str, size: int, batch: int, steps: int, warmup: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from serengeti_tf.data import dataset as ds_reader
    from serengeti_tf.data import pipeline, sampling
    from serengeti_tf.models.resnet import build_model
    from serengeti_tf.train import fitting

    config = _config(size, batch)
    plan = sampling.sampling_plan(ds_reader.train_counts(dataset_dir), config.sampler)
    results = {"job": "phase1", "input_size": size, "batch_size": batch, "timed_steps": steps}
    for feed in ("in_memory", "pipeline"):
        if feed == "pipeline":
            data, _ = pipeline.make_train_dataset(dataset_dir, plan, config, augment=True, seed=0)
            data = data.repeat()
        else:
            rng = np.random.default_rng(0)
            x = rng.normal(size=(batch, size, size, 3)).astype("float32")
            y = (np.arange(batch) % NUM_CLASSES).astype("int32")
            data = tf.data.Dataset.from_tensors((x, y)).repeat()
        model = build_model(config.model, NUM_CLASSES)
        fitting.compile_model(model, config.train, [1] * NUM_CLASSES)
        timer = _StepTimer(warmup)
        model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer.callback])
        results[f"{feed}_images_per_s"] = round(batch / timer.median_step(), 2)
    results["pipeline_vs_in_memory"] = round(results["pipeline_images_per_s"] / results["in_memory_images_per_s"], 3)
    results["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return results


def job_phase2(dataset_dir: str, size: int, batch: int, head_epochs: int) -> dict:
    import math

    from serengeti_tf.data import dataset as ds_reader
    from serengeti_tf.data import pipeline, sampling
    from serengeti_tf.models.resnet import build_model, freeze_backbone, head_model
    from serengeti_tf.train import features as feature_cache
    from serengeti_tf.train import fitting

    config = _config(size, batch)
    counts = ds_reader.train_counts(dataset_dir)
    images = sum(counts.values())
    steps = math.ceil(images / batch)
    loss_counts = list(counts.values())
    model = freeze_backbone(build_model(config.model, NUM_CLASSES))

    # Slow path: one warm-up epoch (tracing), then one timed epoch through the frozen network.
    plan = sampling.sampling_plan(counts, config.sampler)
    data, _ = pipeline.make_train_dataset(dataset_dir, plan, config, augment=False, seed=0)
    fitting.compile_model(model, config.train, loss_counts)
    timer = _StepTimer(steps)
    model.fit(data.repeat(), steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[timer.callback])
    slow_epoch = timer.seconds()

    # Fast path: the feature pass over the train split (first batch = tracing, timed anyway: it is
    # paid once per run), then `head_epochs` epochs of the head on cached features.
    start = time.perf_counter()
    features, labels = feature_cache.extract_features(model, pipeline.make_eval_dataset(dataset_dir, "train", config,
                                                                                         batch))
    feature_seconds = time.perf_counter() - start
    head = fitting.compile_model(head_model(model), config.train, loss_counts)
    batches = feature_cache.feature_batches(features, labels, batch, seed=0).repeat()
    start = time.perf_counter()
    head.fit(batches, steps_per_epoch=steps, epochs=head_epochs, verbose=0)
    head_seconds = time.perf_counter() - start

    def fast_epoch(epochs: int) -> float:
        return (feature_seconds + head_seconds / head_epochs * epochs) / epochs

    return {"job": "phase2", "input_size": size, "batch_size": batch, "train_images": images,
            "slow_epoch_s": round(slow_epoch, 3), "slow_images_per_s": round(images / slow_epoch, 2),
            "feature_pass_s": round(feature_seconds, 3), "head_epoch_s": round(head_seconds / head_epochs, 4),
            "fast_epoch_s_amortised_30": round(fast_epoch(30), 4),
            "fast_epoch_s_amortised_10": round(fast_epoch(10), 4),
            "speedup_30_epochs": round(slow_epoch / fast_epoch(30), 1),
            "speedup_10_epochs": round(slow_epoch / fast_epoch(10), 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _run_job(args: list[str]) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, __file__, "--job", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"benchmark job {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _markdown(report: dict) -> str:
    lines = ["# Training throughput (ResNet-18, CPU)", "",
             f"Machine: {report['machine']}; TensorFlow {report['tensorflow']}, Keras {report['keras']}. "
             f"Generated dataset: {report['dataset']['classes']} classes, {report['dataset']['train_images']} "
             f"train images stored at {report['dataset']['stored_size']} px; {NUM_CLASSES}-class head. "
             f"Total benchmark time {report['seconds']:.0f} s.", "",
             "## Phase 1 (train the whole network; augmentation on)", "",
             "| input px | batch | pipeline img/s | in-memory img/s (baseline) | pipeline / baseline | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in report["phase1"]:
        lines.append(f"| {r['input_size']} | {r['batch_size']} | {r['pipeline_images_per_s']} | "
                     f"{r['in_memory_images_per_s']} | {r['pipeline_vs_in_memory']} | {r['peak_rss_mb']} |")
    lines += ["", "## Phase 2 (head only): slow path vs cached-feature fast path", "",
              "| input px | train images | slow epoch s (baseline) | slow img/s | feature pass s | head epoch s | "
              "fast epoch s (30 ep) | speedup 30 ep | speedup 10 ep | peak RSS MB |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["phase2"]:
        lines.append(f"| {r['input_size']} | {r['train_images']} | {r['slow_epoch_s']} | {r['slow_images_per_s']} | "
                     f"{r['feature_pass_s']} | {r['head_epoch_s']} | {r['fast_epoch_s_amortised_30']} | "
                     f"{r['speedup_30_epochs']}x | {r['speedup_10_epochs']}x | {r['peak_rss_mb']} |")
    best = min(r["speedup_30_epochs"] for r in report["phase2"]) if report["phase2"] else 0
    lines += ["", f"Target: fast path >= 10x the slow path per epoch (feature pass amortised over the epochs "
              f"run). Lowest measured at 30 epochs: {best}x -> {'met' if best >= 10 else 'NOT met'}. "
              "The fast path's cost is essentially one inference pass, so the speedup grows with the epochs "
              "run (about E x slow-epoch / feature-pass, minus the head's own cost); at 10 epochs see the last "
              "speedup column. The feature pass here includes its one-time tf.function tracing (a few seconds, "
              "large next to 512 images) while the slow epoch excludes tracing, so the ratio is conservative; on "
              "the real 155k-image train split tracing is negligible.", "",
              "Phase 1: pipeline and in-memory rates are equal within noise (the machine is shared), i.e. the "
              "tf.data pipeline is not the bottleneck on CPU; the network is. Rates are batch / median step "
              "time; expect +-30% run to run on this shared machine.", "",
              "Peak RSS is per measurement process (model, optimizer, tf.data buffers, TF runtime).", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,224", help="phase-1 input sizes")
    parser.add_argument("--phase2-sizes", default="64,128", help="phase-2 input sizes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4,
                        help="timed phase-1 steps per feed at 224 px (more at smaller sizes, up to 16)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=64, help="train images per class (8 classes)")
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--job", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        kind, dataset_dir, *rest = args.job
        numbers = [int(v) for v in rest]
        result = job_phase1(dataset_dir, *numbers) if kind == "phase1" else job_phase2(dataset_dir, *numbers)
        print(json.dumps(result))
        return

    import platform

    started = time.perf_counter()
    from serengeti_tf.testing import write_tiny_dataset

    classes = [f"class{i:02d}" for i in range(8)]
    with tempfile.TemporaryDirectory(prefix="serengeti-bench-") as tmp:
        dataset_dir = str(write_tiny_dataset(Path(tmp) / "data", {c: args.per_class for c in classes},
                                             val_per_class=1, test_per_class=1, image_size=256))
        phase1, phase2 = [], []
        for size in [int(s) for s in args.sizes.split(",") if s]:
            print(f"phase 1 at {size} px ...", flush=True)
            # Similar timed work per size: short runs at small sizes are too noisy on a shared machine.
            steps = min(16, max(args.steps, round(args.steps * (224 / size) ** 2)))
            phase1.append(_run_job(["phase1", dataset_dir, str(size), str(args.batch_size), str(steps),
                                    str(args.warmup)]))
            print("  ", phase1[-1], flush=True)
        for size in [int(s) for s in args.phase2_sizes.split(",") if s]:
            print(f"phase 2 at {size} px ...", flush=True)
            phase2.append(_run_job(["phase2", dataset_dir, str(size), str(args.batch_size), str(args.head_epochs)]))
            print("  ", phase2[-1], flush=True)
    import keras
    import tensorflow as tf

    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU",
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "dataset": {"classes": len(classes), "train_images": len(classes) * args.per_class,
                          "stored_size": 256},
              "settings": vars(args), "phase1": phase1, "phase2": phase2,
              "seconds": round(time.perf_counter() - started, 1)}
    write_results("training_throughput", report, _markdown(report), Path(args.out))


if __name__ == "__main__":
    main()

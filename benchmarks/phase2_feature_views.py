"""Benchmark: what `train.feature_views` changes in phase 2 (cached-feature head fit) on tiny generated data.

The phase-2 fast path fits the head on cached pooled features. With `feature_views: 1` (default)
they are of the un-augmented centre crop of each train image; with `feature_views: k` they are of k
random train-time augmented views per image (cached once). The slow path (`phase2_augment: true`)
pushes freshly augmented images through the frozen backbone every epoch. This script trains one
phase-1 baseline on a generated imbalanced dataset (20 classes, 300..2 train images, 40 px stored,
32 px input, 3 epochs) and then phase 2 from it with views 1, views 4 and the slow path, for several seeds,
and records test accuracy, test macro F1 (over all classes), feature-pass and head-training seconds.

It is a small, honest measurement of this toolkit's code paths, not evidence about real camera-trap
data: the generated classes differ by hue and stripe frequency, and the seed-to-seed spread is
printed next to every mean so differences smaller than it are read as noise.

Usage: python benchmarks/phase2_feature_views.py [--seeds 3] [--views 4] [--epochs 8]
Writes benchmarks/results/phase2_feature_views.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_results

# 20 classes (closer hues than the tests' 4, so the task is not solved outright), 300..2 train images.
TRAIN_COUNTS = {f"c{i:02d}": n for i, n in enumerate([300, 200, 150, 100, 70, 50, 40, 30, 20, 15,
                                                      12, 10, 8, 6, 5, 4, 3, 3, 2, 2])}
PHASE1_EPOCHS = 3  # a weak backbone leaves room for the head to matter


def base_config(epochs: int):
    from serengeti_tf import config as cfg

    config = cfg.Config()
    config.model.input_size = 32
    config.train.batch_size = 32
    config.train.epochs = epochs
    config.train.early_stopping_patience = 0
    config.eval.batch_size = 64
    config.sampler.shuffle_buffer = 256
    return config


def test_scores(run_dir: Path, dataset_dir: Path, config) -> dict:
    from sklearn.metrics import f1_score

    from serengeti_tf.data import pipeline
    from serengeti_tf.models.resnet import load_model

    model = load_model(run_dir / "model.keras", compile=False)
    labels, predictions = [], []
    for images, batch_labels in pipeline.make_eval_dataset(dataset_dir, "test", config):
        predictions.append(np.argmax(np.asarray(model(images, training=False)), axis=1))
        labels.append(batch_labels.numpy())
    y, p = np.concatenate(labels), np.concatenate(predictions)
    return {"accuracy": float(np.mean(y == p)),
            "macro_f1": float(f1_score(y, p, labels=list(range(len(TRAIN_COUNTS))), average="macro",
                                       zero_division=0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8, help="phase-2 epochs (phase 1 trains 3)")
    args = parser.parse_args()

    from serengeti_tf.testing import write_tiny_dataset
    from serengeti_tf.train import training

    work = Path(tempfile.mkdtemp(prefix="feature_views_bench_"))
    data = write_tiny_dataset(work / "prepared", TRAIN_COUNTS, val_per_class=6, test_per_class=10, image_size=40)
    phase1 = work / "phase1"
    started = time.perf_counter()
    training.train(base_config(PHASE1_EPOCHS), data, phase1, on_event=lambda *_: None)
    phase1_seconds = time.perf_counter() - started
    variants = {"views1": {"feature_views": 1}, f"views{args.views}": {"feature_views": args.views},
                "slow_augmented": {"phase2_augment": True}}
    rows = []
    for seed in range(args.seeds):
        for name, settings in variants.items():
            config = base_config(args.epochs)
            config.train.phase, config.train.seed = 2, seed
            for key, value in settings.items():
                setattr(config.train, key, value)
            run = work / f"{name}-seed{seed}"
            t0 = time.perf_counter()
            training.train(config, data, run, init_run=phase1, on_event=lambda *_: None)
            wall = time.perf_counter() - t0
            timings = json.loads((run / "timings.json").read_text())
            rows.append({"variant": name, "seed": seed, **test_scores(run, data, config),
                         "feature_seconds": timings["feature_seconds"], "train_seconds": timings["train_seconds"],
                         "wall_seconds": round(wall, 2),
                         "head_trained_on": json.loads((run / "lineage.json").read_text())["head_trained_on"]})
            print(f"{name} seed {seed}: acc {rows[-1]['accuracy']:.4f} macro F1 {rows[-1]['macro_f1']:.4f} "
                  f"({wall:.1f}s)", flush=True)
    phase1_scores = test_scores(phase1, data, base_config(1))

    summary = {}
    for name in variants:
        picked = [r for r in rows if r["variant"] == name]
        summary[name] = {key: {"mean": float(np.mean([r[key] for r in picked])),
                               "std": float(np.std([r[key] for r in picked], ddof=1)) if len(picked) > 1 else None}
                         for key in ("accuracy", "macro_f1", "feature_seconds", "train_seconds", "wall_seconds")}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
              "train_counts": TRAIN_COUNTS, "val_per_class": 6, "test_per_class": 10,
              "input_size": 32, "phase1_epochs": PHASE1_EPOCHS, "phase2_epochs": args.epochs, "seeds": args.seeds,
              "phase1_seconds": round(phase1_seconds, 2), "phase1_test": phase1_scores,
              "runs": rows, "summary": summary}
    write_results("phase2_feature_views", result, markdown(result))


def markdown(result: dict) -> str:
    def cell(stats: dict, digits: int = 4) -> str:
        std = stats["std"]
        return f"{stats['mean']:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")

    lines = [
        "# phase 2: head fitted on un-augmented vs augmented cached features",
        "",
        f"{result['date']}; {result['machine']}. Generated data: {len(result['train_counts'])} classes, train counts "
        f"{', '.join(str(n) for n in result['train_counts'].values())}, {result['val_per_class']} val and "
        f"{result['test_per_class']} test images per class, {result['input_size']} px input. One phase-1 "
        f"baseline ({result['phase1_epochs']} epochs, test accuracy {result['phase1_test']['accuracy']:.4f}, "
        f"macro F1 {result['phase1_test']['macro_f1']:.4f}); phase 2 from it for {result['phase2_epochs']} "
        f"epochs per variant, {result['seeds']} seeds (mean ± std over seeds; the seed sets the head's "
        "batch order and the augmentation draws).",
        "",
        "| variant | test accuracy | test macro F1 | feature pass s | head training s | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, stats in result["summary"].items():
        lines.append(f"| {name} | {cell(stats['accuracy'])} | {cell(stats['macro_f1'])} | "
                     f"{cell(stats['feature_seconds'], 1)} | {cell(stats['train_seconds'], 1)} | "
                     f"{cell(stats['wall_seconds'], 1)} |")
    views = [name for name in result["summary"] if name.startswith("views") and name != "views1"][0]
    base, aug = result["summary"]["views1"], result["summary"][views]
    spread = max(s for s in (base["macro_f1"]["std"], aug["macro_f1"]["std"]) if s is not None) \
        if result["seeds"] > 1 else None
    delta = aug["macro_f1"]["mean"] - base["macro_f1"]["mean"]
    verdict = ("within the seed-to-seed spread: no difference is shown"
               if spread is not None and abs(delta) <= 2 * spread
               else "larger than twice the seed spread" if spread is not None
               else "one seed: no spread to compare with")
    lines += [
        "",
        "- views1 = `train.feature_views: 1` (default): features of the un-augmented centre crop, computed once.",
        f"- {views} = `train.feature_views: {views[5:]}`: features of {views[5:]} random augmented views per image, "
        "computed once and cached; each epoch draws as many rows as there are images.",
        "- slow_augmented = `train.phase2_augment: true`: fresh augmentation every epoch through the frozen backbone.",
        f"- {views} vs views1: Δ test macro F1 {delta:+.4f} ({verdict}); the feature pass costs "
        f"{aug['feature_seconds']['mean'] / max(base['feature_seconds']['mean'], 1e-9):.1f}x the views1 pass.",
        "- Tiny generated data: this measures what the code paths do, not how much augmentation helps on "
        "camera-trap images.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Cached pooled backbone features: phase 2's fast path and the head re-balancing both fit or score
the Dense head on them instead of running the frozen backbone every epoch.

Each split's features are computed once (`extract_features`) and saved as
`checkpoints/<name>.npz`, stamped with the sha256 of the model whose backbone computed them, so an
interrupted run resumes without recomputing and a cache from another backbone is never reused.
`train.feature_views` > 1 caches that many augmented views per train image instead of the
un-augmented centre crop (`head_features_description` says which, for lineage.json).
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from serengeti_tf import config as cfg
from serengeti_tf import events
from serengeti_tf.io_utils import atomic_path


def features_function(model) -> Callable:
    """The compiled forward pass of `model`'s pooled backbone features (`models.inference`); build it
    once per model and pass it to `extract_features` for every split."""
    from serengeti_tf.models.inference import inference_function
    from serengeti_tf.models.resnet import feature_extractor

    return inference_function(feature_extractor(model))


def extract_features(model, dataset, forward: Optional[Callable] = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features (float32 `[N, 512]`) and labels (int32) of every `(image, label)`
    batch; `forward` is `features_function(model)` (built here when not given)."""
    from serengeti_tf.models.inference import predict_dataset
    from serengeti_tf.models.resnet import feature_extractor

    features_model = feature_extractor(model)
    features, labels = predict_dataset(features_model, dataset, forward or features_function(model))
    return features, labels.astype(np.int32)


def cached_features(path: Path, compute: Callable[[], tuple[np.ndarray, np.ndarray]],
                    on_event: events.EventSink, source: str = "") -> tuple[np.ndarray, np.ndarray, float]:
    """Features from `path` when a previous (interrupted) session saved them, else computed + saved.

    `source` (the sha256 of the model file whose backbone computes them) is stored with the
    features; a cache stamped with another source (or none) is stale and computed again.
    """
    if path.exists():
        try:
            with np.load(path) as data:  # allow_pickle stays False: a cache never runs code
                stored = str(data["source_sha256"]) if "source_sha256" in data.files else ""
                if stored == source:
                    return data["features"], data["labels"], 0.0
            on_event(events.Step(f"{path.name} was computed by another model (sha256 {stored[:12] or 'unrecorded'}, "
                                 f"expected {source[:12]}); computing it again"))
        except (ValueError, OSError, KeyError, zipfile.BadZipFile) as err:
            on_event(events.Step(f"{path.name} is not a feature cache this version reads "
                                 f"({type(err).__name__}: pickled objects or a damaged file); computing it again"))
    start = time.perf_counter()
    features, labels = compute()
    seconds = time.perf_counter() - start
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, features=features, labels=labels, source_sha256=np.asarray(source))
    on_event(events.Step(f"cached {len(labels)} feature vectors in {path.name} ({seconds:.1f}s)"))
    return features, labels, seconds


def head_features_description(views: int) -> str:
    """What the cached train features behind a head fit are, in words (lineage, rebalancing.json)."""
    if views == 1:
        return ("pooled backbone features of the un-augmented centre crop (eval view) of each train image, "
                "computed once; the head never sees augmentation (unlike the slow path with phase2_augment)")
    return (f"pooled backbone features of {views} random train-time augmented views of each train image, "
            f"computed once and cached; each epoch draws as many rows as there are images from the "
            f"{views}x pool (a fixed set of views, not fresh augmentation every epoch)")


def feature_cache_key(views: int) -> str:
    """Cache name of the train features: `train` (one un-augmented view) or `train-views<k>`."""
    return "train" if views == 1 else f"train-views{views}"


def split_features(model, dataset_dir: Path, config: cfg.Config, cache_file: Callable[[str], Path],
                   on_event, source: str, train_views: int = 1
                   ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """Pooled features of the train and val splits, each computed once and cached at
    `cache_file(key)`; returns them (as "train" and "val") and the seconds the feature passes took.

    Val: the eval view in stored order. Train: the eval view in stored order (`train_views` 1), or
    `train_views` augmented views per image (`pipeline.make_views_dataset`, seeded by the data seed).
    """
    from serengeti_tf.data import pipeline

    out, seconds = {}, 0.0
    forward = features_function(model)  # one compiled pass (one trace) for both splits
    for split in ("train", "val"):
        views = train_views if split == "train" else 1

        def compute(split=split, views=views):
            if views == 1:
                data = pipeline.make_eval_dataset(dataset_dir, split, config, batch_size=config.eval.batch_size)
            else:
                data = pipeline.make_views_dataset(dataset_dir, split, config, views, pipeline.data_seed(config),
                                                   batch_size=config.eval.batch_size)
            return extract_features(model, data, forward)

        key = feature_cache_key(views) if split == "train" else split
        feats, labels, took = cached_features(cache_file(key), compute, on_event, source)
        out[split], seconds = (feats, labels), seconds + took
    return out, seconds


def feature_batches(features: np.ndarray, labels: np.ndarray, batch_size: int, seed: Optional[int]):
    """Batches of cached features; reshuffled every epoch when `seed` is given (else stored order)."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((features, labels.astype(np.int32)))
    if seed is not None:
        data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size)

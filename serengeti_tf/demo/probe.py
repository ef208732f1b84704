"""Measures this machine for the demo's budget: training steps of ResNet-18, a checkpoint save, image drawing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from serengeti_tf import config as cfg
from serengeti_tf import events
from serengeti_tf.demo.budget import DEMO_BATCH_SIZE, LARGEST_IMAGES, PRESETS, Throughput, choose_settings
from serengeti_tf.demo.capture_plan import plan_captures
from serengeti_tf.demo.long_tail import DEMO_SPECIES, LongTail
from serengeti_tf.demo.render import DEFAULT_IMAGE_SIZE, Canvas, encode_jpeg, render_capture, site_background

PROBE_SIZES = (32, 48)


def measure_throughput(budget_seconds: float, sizes: Sequence[int] = PROBE_SIZES, batch_size: int = DEMO_BATCH_SIZE,
                       steps: int = 3, num_classes: int = len(DEMO_SPECIES),
                       on_event: events.EventSink = events.ignore) -> Throughput:
    """Times a few real training steps of ResNet-18 at each input size (smallest first, on random
    images, the demo's batch size), one checkpoint save and the demo image renderer. The first step
    (tracing) gives the per-run overhead; one more step warms up before the timed ones (the second
    step is still noticeably slower than the rest on CPU).

    A larger size is probed only if some preset at that size could fit even at the optimistic rate
    (img/s falling only linearly with the side), so a slow machine does not spend its budget probing.
    """
    started = time.perf_counter()
    import keras

    from serengeti_tf.models.resnet import build_model, save_model
    from serengeti_tf.train.training import compile_model

    rng = np.random.default_rng(0)
    ips, overhead, save_seconds, model = {}, {}, 0.0, None
    for size in sorted(sizes):
        if ips and not _worth_probing(size, budget_seconds, ips, overhead, time.perf_counter() - started):
            on_event(events.Step(f"probe: skipping {size}px (even an optimistic rate would not fit the budget)",
                                 level=1))
            continue
        keras.backend.clear_session()
        model = compile_model(build_model(cfg.ModelConfig(input_size=size), num_classes), cfg.TrainConfig(),
                              [1] * num_classes)
        x = rng.uniform(0, 1, (batch_size, size, size, 3)).astype("float32")
        y = rng.integers(0, num_classes, batch_size)
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        first = time.perf_counter() - t0
        model.train_on_batch(x, y)  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        step = (time.perf_counter() - t0) / steps
        ips[size], overhead[size] = batch_size / step, max(0.0, first - step)
        on_event(events.Step(f"probe: {size}px ResNet-18 trains at {ips[size]:.1f} img/s "
                             f"(first step {first:.1f}s incl. tracing)", level=1))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_model(model, Path(tmp) / "probe.keras")
        save_seconds = time.perf_counter() - t0
    keras.backend.clear_session()
    render = rendering_rate()
    on_event(events.Step(f"probe: checkpoint save {save_seconds:.1f}s, demo images drawn at {render:.0f} img/s",
                         level=1))
    return Throughput(ips, overhead, save_seconds, render)


def _worth_probing(size: int, budget_seconds: float, ips: dict, overhead: dict, elapsed: float) -> bool:
    smallest = min(ips)
    optimistic = Throughput({size: ips[smallest] * smallest / size}, {size: overhead[smallest]}, 0.0, 1e9)
    presets = [p for p in PRESETS if p.input_size == size]
    return any(choose_settings(budget_seconds, optimistic, elapsed, presets=[p]).fits for p in presets)


def rendering_rate(images: int = 8, seed: int = 0, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> float:
    """Demo images (the long tail's close-ups) drawn and JPEG-encoded per second on this machine (a
    short timed sample, no files)."""
    width, height = image_size
    canvas = Canvas.of(width, height)
    scene, horizon = site_background(0, seed, canvas)
    plan = plan_captures(seed=seed, long_tail=LongTail(len(DEMO_SPECIES), LARGEST_IMAGES))
    rng = np.random.default_rng([seed, 2])
    started, done = time.perf_counter(), 0
    for cap in plan.itertuples(index=False):
        frames = render_capture(list(cap.species), int(cap.count), int(cap.frames), cap.start, scene, horizon,
                                canvas, rng, bool(cap.closeup))
        for image in frames:
            encode_jpeg(image, cap.start)
        done += len(frames)
        if done >= images:
            break
    return done / max(time.perf_counter() - started, 1e-6)

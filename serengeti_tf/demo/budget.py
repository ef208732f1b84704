"""Sizes the demo to a time budget: measured throughput in, settings (data scale, input size, samplers, epochs) out.

Pure functions, no TensorFlow: `choose_settings` picks the richest preset of `PRESETS` and the most
epochs that fit `PLAN_FRACTION` of the budget, using the image-pass accounting of train/progress.py
(through `evaluate.experiment.grid_work`); after `prepare`, `refit_epochs` re-fits the epochs to the
time really left with the exact image counts. The throughput comes from probe.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from serengeti_tf import config as cfg
from serengeti_tf.demo.class_counts import class_image_counts, scaled_paper_rules
from serengeti_tf.errors import UserError

# Three captures per class at least, so every class reaches train, val and test (as in the paper,
# where every class has test images) and per-class scores exist for the rarest classes too.
DEMO_MIN_CAPTURES = 3

# The plan fills this share of the budget; the rest absorbs estimate error and a machine that
# slows down mid-run (the promise is the budget + 20%).
PLAN_FRACTION = 0.8
# Report, plots and the process start (TensorFlow import) that are not part of any run.
FIXED_SECONDS = 30.0
# Per run: building/loading the model and tracing its train, validation and evaluation functions
# costs about this many times the probe's first-step (tracing) overhead; a run that trains no
# backbone (phase 2's fast path) traces less.
RUN_OVERHEAD_FACTOR = 3.0
HEAD_RUN_OVERHEAD_FACTOR = 1.5
# Training through the real input pipeline (decode, augment and validation share the same cores)
# ran at ~0.66 of the probe's bare in-memory steps at 32 px on the 2-core build machine; this
# share of the probed rate is what the estimate assumes.
PIPELINE_SHARE = 0.7
# prepare re-reads and re-encodes every drawn image: measured at ~0.15x the drawing time on the
# build machine; a quarter keeps the data stage estimate on the safe side.
PREPARE_SHARE = 0.25


@dataclass(frozen=True)
class Preset:
    """One demo shape: data scale (of the paper's Table 4 counts), input px, samplers, epoch range."""

    scale: float
    input_size: int
    samplers: tuple[str, ...]
    max_epochs: int
    min_epochs: int


# Richest first. The first one is the demo as it was before budgets (~2,400 images, 64 px, three
# samplers); the leanest keeps the two-phase story (baseline vs ROS phase 1 -> phase 2).
PRESETS: tuple[Preset, ...] = (
    Preset(0.015, 64, ("none", "rus", "ros"), 8, 4),
    Preset(0.015, 48, ("none", "rus", "ros"), 8, 4),
    Preset(0.01, 48, ("none", "rus", "ros"), 8, 3),
    Preset(0.01, 32, ("none", "rus", "ros"), 8, 3),
    Preset(0.006, 32, ("none", "ros"), 6, 3),
    Preset(0.006, 32, ("none", "ros"), 3, 1),
)


@dataclass(frozen=True)
class Throughput:
    """What the probe measured on this machine."""

    train_images_per_second: dict[int, float]  # input px -> training images/s (forward + backward)
    first_step_overhead: dict[int, float]  # input px -> seconds of tracing before the first step
    save_seconds: float  # one full-model checkpoint save
    render_images_per_second: float  # demo images drawn + encoded per second

    def at(self, size: int) -> tuple[float, float]:
        """(img/s, first-step overhead s) at `size`: measured, or img/s on a power law of the pixel
        count through the two nearest measured sizes (with one measured size: proportional to the
        pixel count, which overstates the cost of small inputs) and the nearest size's overhead."""
        ips, over = self.train_images_per_second, self.first_step_overhead
        if size in ips:
            return ips[size], over[size]
        sizes = sorted(ips)
        below = [s for s in sizes if s < size]
        above = [s for s in sizes if s > size]
        if below and above:
            lo, hi = below[-1], above[0]
        else:
            lo, hi = (sizes[-2], sizes[-1]) if below and len(sizes) > 1 else (sizes[0], sizes[0])
        k = math.log(ips[lo] / ips[hi]) / math.log((hi / lo) ** 2) if hi != lo else 1.0
        k = max(k, 0.0)
        near = min(sizes, key=lambda s: abs(s - size))
        return ips[lo] * (lo / size) ** (2 * k), over[near]


@dataclass(frozen=True)
class DemoSettings:
    scale: float
    input_size: int
    image_size: int  # stored shorter side of the prepared images
    samplers: tuple[str, ...]
    epochs: int
    estimated_seconds: float
    budget_seconds: float
    fits: bool
    reason: str
    per_run_seconds: tuple[float, ...] = field(default_factory=tuple)

    def config_updates(self) -> dict:
        """The config sections these settings set (the paper's count rules scaled like the data)."""
        rules = scaled_paper_rules(self.scale)
        return {"data": {"image_size": self.image_size}, "model": {"input_size": self.input_size},
                "train": {"epochs": self.epochs}, "sampler": rules["sampler"], "eval": rules["eval"],
                "experiment": {"samplers": list(self.samplers), "seeds": 1}}


def stored_image_size(input_size: int) -> int:
    """Stored shorter side for an input crop (72 px for 64 px crops, as configs/demo.yaml had)."""
    return int(round(input_size * 1.125))


def approximate_counts(scale: float) -> tuple[dict[str, int], dict[str, int]]:
    """(train counts per class, images per split) the demo data at `scale` will have, before it
    exists: 80/10/10 of each class's images (prepare splits by capture, so this is approximate)."""
    train = {}
    splits = {"train": 0, "val": 0, "test": 0}
    for name, n in class_image_counts(scale, DEMO_MIN_CAPTURES).items():
        if name in ("blank", "human"):  # dropped by prepare (data.drop_empty, data.drop_human)
            continue
        t = max(1, int(round(0.8 * n)))
        train[name] = t
        splits["train"] += t
        splits["val"] += (n - t) // 2
        splits["test"] += n - t - (n - t) // 2
    return train, splits


def estimate_run_seconds(preset: Preset, epochs: int, throughput: Throughput,
                         train_counts: dict[str, int], split_counts: dict[str, int]) -> list[float]:
    """Seconds of each run of the demo grid (training, validation, feature pass, test evaluation)."""
    from serengeti_tf.evaluate.experiment import grid_work, plan_runs

    config = cfg.resolve(updates=[DemoSettings(preset.scale, preset.input_size, stored_image_size(preset.input_size),
                                               preset.samplers, epochs, 0, 0, True, "").config_updates(),
                                  {"train": {"early_stopping_patience": 0}}])
    runs = plan_runs(config, Path("."))
    ips, overhead = throughput.at(preset.input_size)
    ips *= PIPELINE_SHARE
    seconds = []
    for work in grid_work(config, runs, train_counts, split_counts):
        epochs_with_saves = work.epochs or config.train.epochs  # phase 2's head epochs save checkpoints too
        factor = RUN_OVERHEAD_FACTOR if work.epochs else HEAD_RUN_OVERHEAD_FACTOR
        seconds.append(factor * overhead + work.units() / ips
                       + epochs_with_saves * 2 * throughput.save_seconds)
    return seconds


def estimate_data_seconds(scale: float, throughput: Throughput) -> float:
    """Drawing the demo images, then preparing them (`PREPARE_SHARE` of the drawing time)."""
    images = sum(class_image_counts(scale, DEMO_MIN_CAPTURES).values()) * 1.05  # + blank/multi captures
    return (1 + PREPARE_SHARE) * images / throughput.render_images_per_second


def choose_settings(budget_seconds: float, throughput: Throughput, elapsed_seconds: float = 0.0,
                    presets: Sequence[Preset] = PRESETS, counts_for=approximate_counts) -> DemoSettings:
    """The richest preset, with the most epochs in its range, whose estimate fits PLAN_FRACTION of
    the budget (minus what is already spent); the leanest preset at its fewest epochs when none fits
    (then `fits` is False and `reason` says so)."""
    if not budget_seconds > 0:
        raise UserError(f"demo: the time budget must be > 0 minutes, got {budget_seconds / 60:g}")
    target = PLAN_FRACTION * budget_seconds - elapsed_seconds
    tried = []
    for preset in presets:
        train_counts, splits = counts_for(preset.scale)
        data = estimate_data_seconds(preset.scale, throughput)
        for epochs in range(preset.max_epochs, preset.min_epochs - 1, -1):
            runs = estimate_run_seconds(preset, epochs, throughput, train_counts, splits)
            total = FIXED_SECONDS + data + sum(runs)
            if total <= target:
                return _settings(preset, epochs, elapsed_seconds + total, budget_seconds, True, runs, (
                    f"{preset.input_size}px at {throughput.at(preset.input_size)[0]:.1f} img/s measured: "
                    f"{epochs} epoch(s) of "
                    f"{splits['train']} train images, {len(runs)} runs estimated {total / 60:.1f} min "
                    f"+ {elapsed_seconds / 60:.1f} min spent <= {PLAN_FRACTION:.0%} of "
                    f"{budget_seconds / 60:g} min" + (f"; richer presets did not fit ({'; '.join(tried)})"
                                                       if tried else "")))
        tried.append(f"{preset.scale} scale {preset.input_size}px {len(preset.samplers)} samplers "
                     f"{preset.min_epochs} epochs: {(FIXED_SECONDS + data + sum(runs)) / 60:.1f} min")
    preset = presets[-1]
    estimated = elapsed_seconds + FIXED_SECONDS + data + sum(runs)
    return _settings(preset, preset.min_epochs, estimated, budget_seconds,
                     False, runs, f"no preset fits {budget_seconds / 60:g} min on this machine; running the "
                                  f"leanest, estimated {estimated / 60:.1f} min")


def refit_epochs(settings: DemoSettings, throughput: Throughput, elapsed_seconds: float,
                 train_counts: dict[str, int], split_counts: dict[str, int]) -> DemoSettings:
    """After prepare: the most epochs (at most the chosen ones, at least 1) that fit what is left of
    PLAN_FRACTION of the budget with the dataset's exact counts; scale, size and samplers stay."""
    preset = Preset(settings.scale, settings.input_size, settings.samplers, settings.epochs, 1)
    target = PLAN_FRACTION * settings.budget_seconds - elapsed_seconds - FIXED_SECONDS
    for epochs in range(settings.epochs, 0, -1):
        runs = estimate_run_seconds(preset, epochs, throughput, train_counts, split_counts)
        if sum(runs) <= target or epochs == 1:
            break
    if epochs == settings.epochs:
        return settings
    why = (f"{settings.reason}; after prepare, {epochs} epochs instead of {settings.epochs} fit the "
           f"{max(target, 0) / 60:.1f} min left") if sum(runs) <= target else (
           f"{settings.reason}; after prepare even 1 epoch needs {sum(runs) / 60:.1f} min of the "
           f"{max(target, 0) / 60:.1f} min left")
    return _settings(preset, epochs, elapsed_seconds + FIXED_SECONDS + sum(runs), settings.budget_seconds,
                     sum(runs) <= target, runs, why)


def _settings(preset: Preset, epochs: int, estimate: float, budget: float, fits: bool, runs: Sequence[float],
              reason: str) -> DemoSettings:
    return DemoSettings(preset.scale, preset.input_size, stored_image_size(preset.input_size), tuple(preset.samplers),
                        epochs, round(estimate, 1), budget, fits, reason, tuple(round(r, 1) for r in runs))

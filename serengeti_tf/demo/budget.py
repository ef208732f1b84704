"""Sizes the demo to a time budget: measured throughput in, settings (species, input size, samplers,
seeds, epochs) out.

Pure functions, no TensorFlow: `choose_settings` picks the richest preset of `PRESETS` and the most
epochs that fit `PLAN_FRACTION` of the budget, using the image-pass accounting of train/progress.py
(through `train.recipes.grid_work`); after `prepare`, `refit_epochs` re-fits the epochs to the
time really left with the exact image counts. The throughput comes from probe.py; the data design
(the long tail of K species) from long_tail.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from serengeti_tf import config as cfg
from serengeti_tf.demo.long_tail import SPLIT_FRACTIONS, LongTail, paper_rules_on_long_tail
from serengeti_tf.errors import UserError
from serengeti_tf.train.recipes import grid_work, plan_runs

# The most frequent species' images in every preset: 500 of them train, 50x the rarest's 10.
LARGEST_IMAGES = 834
# Batch size of the demo's runs: half the paper's 64 gives a from-scratch ResNet-18 twice the updates
# per epoch on these few images (at 32 px the baseline reached 0.86 validation accuracy after 2
# epochs at 32 vs 0.65 at 64 on the build machine). Every model of the grid uses it alike.
DEMO_BATCH_SIZE = 32

# The plan fills this share of the budget; the rest absorbs estimate error and a machine that
# slows down mid-run (the promise is the budget + 20%).
PLAN_FRACTION = 0.8
# Report, plots and the process start (TensorFlow import) that are not part of any run.
FIXED_SECONDS = 30.0
# Per run: building/loading the model and tracing its train, validation and evaluation functions
# costs about this many times the probe's first-step (tracing) overhead; a run that trains no
# backbone (phase 2's fast path) traces less. Measured on the loaded 2-core build machine (load
# 9-16): a baseline run's time beyond its steady epochs and checkpoints was 1.5-1.8x the probe's
# first step; 2x keeps a margin.
RUN_OVERHEAD_FACTOR = 2.0
HEAD_RUN_OVERHEAD_FACTOR = 1.0
# Training through the real input pipeline (decode, augment and validation share the same cores)
# ran at ~0.66 of the probe's bare in-memory steps at 32 px on the 2-core build machine; this
# share of the probed rate is what the estimate assumes.
PIPELINE_SHARE = 0.7
# prepare re-reads and re-encodes every drawn image: measured at ~0.15x the drawing time on the
# build machine; a quarter keeps the data stage estimate on the safe side.
PREPARE_SHARE = 0.25
# Blank, human and two-species captures drawn on top of the labelled ones (capture_plan.py): ~5%
# more images.
UNLABELLED_SHARE = 0.05


@dataclass(frozen=True)
class Preset:
    """One demo shape: species on the long tail, input px, samplers, seeds, epoch range."""

    species: int
    input_size: int
    samplers: tuple[str, ...]
    seeds: int
    max_epochs: int
    min_epochs: int


# Richest first; a slower machine first loses the larger input, then species, RUS, the second
# seed and epochs. The epoch floors are what a ResNet-18 needs to learn the species at 32 px (on
# the build machine the baseline reached 0.88 test accuracy after 6 epochs of the 8-species tail
# at batch 64, and 0.92 validation accuracy after 4 epochs of the 6-species tail at batch 32); an
# epoch costs little next to a run's tracing and checkpoints, so a slow machine drops runs first.
# The leanest keeps the two-phase story (baseline vs ROS phase 1 -> phase 2).
PRESETS: tuple[Preset, ...] = (
    Preset(10, 48, ("none", "rus", "ros"), 2, 15, 8),
    Preset(10, 32, ("none", "rus", "ros"), 2, 15, 8),
    Preset(8, 32, ("none", "rus", "ros"), 2, 12, 6),
    Preset(8, 32, ("none", "ros"), 2, 12, 6),
    Preset(8, 32, ("none", "ros"), 1, 12, 6),
    Preset(6, 32, ("none", "ros"), 1, 10, 6),
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
    species: int  # K species on the long tail (long_tail.py)
    input_size: int
    image_size: int  # stored shorter side of the prepared images
    samplers: tuple[str, ...]
    seeds: int
    epochs: int
    estimated_seconds: float
    budget_seconds: float
    fits: bool
    reason: str
    per_run_seconds: tuple[float, ...] = field(default_factory=tuple)
    min_epochs: int = 1  # the preset's floor: fewer epochs do not learn the species (see PRESETS)

    def long_tail(self) -> LongTail:
        return LongTail(self.species, LARGEST_IMAGES)

    def config_updates(self) -> dict:
        """The config sections these settings set (the paper's count rules placed on the long tail)."""
        rules = paper_rules_on_long_tail(list(self.long_tail().train_counts().values()))
        return {"data": {"image_size": self.image_size, "split_fractions": list(SPLIT_FRACTIONS)},
                "model": {"input_size": self.input_size},
                "train": {"epochs": self.epochs, "batch_size": DEMO_BATCH_SIZE},
                "sampler": rules["sampler"], "eval": rules["eval"],
                "experiment": {"samplers": list(self.samplers), "seeds": self.seeds}}


def stored_image_size(input_size: int) -> int:
    """Stored shorter side for an input crop (72 px for 64 px crops, as configs/demo.yaml had)."""
    return int(round(input_size * 1.125))


def approximate_counts(species: int) -> tuple[dict[str, int], dict[str, int]]:
    """(train counts per class, images per split) the demo data with `species` species will have,
    before it exists (exact: one-image captures split by `prepare`'s rule)."""
    parts = LongTail(species, LARGEST_IMAGES).split_counts()
    train = {name: p[0] for name, p in parts.items()}
    splits = {split: sum(p[i] for p in parts.values()) for i, split in enumerate(("train", "val", "test"))}
    return train, splits


def estimate_run_seconds(preset: Preset, epochs: int, throughput: Throughput,
                         train_counts: dict[str, int], split_counts: dict[str, int]) -> list[float]:
    """Seconds of each run of the demo grid (training, validation, feature pass, test evaluation)."""
    config = cfg.resolve(updates=[DemoSettings(preset.species, preset.input_size, stored_image_size(preset.input_size),
                                               preset.samplers, preset.seeds, epochs, 0, 0, True, "").config_updates(),
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


def estimate_data_seconds(species: int, throughput: Throughput) -> float:
    """Drawing the demo images, then preparing them (`PREPARE_SHARE` of the drawing time)."""
    images = sum(LongTail(species, LARGEST_IMAGES).image_counts().values()) * (1 + UNLABELLED_SHARE)
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
        train_counts, splits = counts_for(preset.species)
        data = estimate_data_seconds(preset.species, throughput)
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
        tried.append(f"{preset.species} species {preset.input_size}px {len(preset.samplers)} samplers "
                     f"{preset.seeds} seed(s) {preset.min_epochs} epochs: "
                     f"{(FIXED_SECONDS + data + sum(runs)) / 60:.1f} min")
    preset = presets[-1]
    estimated = elapsed_seconds + FIXED_SECONDS + data + sum(runs)
    return _settings(preset, preset.min_epochs, estimated, budget_seconds,
                     False, runs, f"no preset fits {budget_seconds / 60:g} min on this machine; running the "
                                  f"leanest, estimated {estimated / 60:.1f} min")


def refit_epochs(settings: DemoSettings, throughput: Throughput, elapsed_seconds: float,
                 train_counts: dict[str, int], split_counts: dict[str, int]) -> DemoSettings:
    """After prepare: the most epochs (at most the chosen ones, at least the preset's `min_epochs`:
    fewer would not learn the species, and a demo that learns nothing shows nothing) that fit what is
    left of PLAN_FRACTION of the budget with the dataset's exact counts; species, size, samplers and
    seeds stay. When even the floor does not fit, `fits` is False and `reason` says so."""
    floor = min(settings.min_epochs, settings.epochs)
    preset = Preset(settings.species, settings.input_size, settings.samplers, settings.seeds, settings.epochs, floor)
    target = PLAN_FRACTION * settings.budget_seconds - elapsed_seconds - FIXED_SECONDS
    for epochs in range(settings.epochs, floor - 1, -1):
        runs = estimate_run_seconds(preset, epochs, throughput, train_counts, split_counts)
        if sum(runs) <= target or epochs == floor:
            break
    if epochs == settings.epochs and (sum(runs) <= target or not settings.fits):
        return settings
    why = (f"{settings.reason}; after prepare, {epochs} epochs instead of {settings.epochs} fit the "
           f"{max(target, 0) / 60:.1f} min left") if sum(runs) <= target else (
           f"{settings.reason}; after prepare even {epochs} epochs (fewer do not learn the species) need "
           f"{sum(runs) / 60:.1f} min of the {max(target, 0) / 60:.1f} min left")
    return _settings(preset, epochs, elapsed_seconds + FIXED_SECONDS + sum(runs), settings.budget_seconds,
                     sum(runs) <= target, runs, why)


def _settings(preset: Preset, epochs: int, estimate: float, budget: float, fits: bool, runs: Sequence[float],
              reason: str) -> DemoSettings:
    return DemoSettings(preset.species, preset.input_size, stored_image_size(preset.input_size),
                        tuple(preset.samplers), preset.seeds, epochs, round(estimate, 1), budget, fits, reason,
                        tuple(round(r, 1) for r in runs), preset.min_epochs)

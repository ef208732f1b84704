"""What a grid of runs costs in image passes, and a grid-wide ETA from the measured time per image.

The unit of work is one training image (forward + backward pass through the model). A
forward-only image (validation after every epoch, a feature pass, the test evaluation) costs
`FORWARD_COST` of that. `run_work` turns a planned run into these units from the dataset's counts
and the run's config; `GridProgress` measures the seconds per unit on the work done in THIS
session (finished runs found on disk cost nothing and are not measured) and multiplies it by the
units left, so the ETA follows the machine's real speed rather than the number of runs done.
`demo` sizes itself with the same units (`demo.budget.choose_settings`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from serengeti_tf import config as cfg
from serengeti_tf.events import GridEta
from serengeti_tf.train.head_choices import fits_on_train_features

# A ResNet forward pass is about a third of forward + backward (the backward pass costs ~2 forwards).
FORWARD_COST = 1 / 3


@dataclass(frozen=True)
class RunWork:
    """One run's work: `epochs` epochs of `train_images` training and `val_images` validation images,
    plus `once_forward` forward-only images done once (feature pass, test evaluation)."""

    epochs: int
    train_images: int
    val_images: int
    once_forward: int

    @property
    def epoch_units(self) -> float:
        return self.train_images + FORWARD_COST * self.val_images

    def units(self, epochs: Optional[int] = None) -> float:
        """Units of the whole run (or of a run that trains only `epochs` epochs)."""
        epochs = self.epochs if epochs is None else epochs
        return epochs * self.epoch_units + FORWARD_COST * self.once_forward


def run_work(train_config: cfg.Config, split_counts: dict[str, int], epoch_images: int,
             branches_from_trained: bool = False) -> RunWork:
    """The work of one run of `train_config` (phase and settings as it will train).

    `split_counts`: images in the train, val and test splits; `epoch_images`: training images per
    epoch of a phase-1 run (its sampler's plan). A phase-2 run on the fast path and a run that
    re-balances a trained model's head (`branches_from_trained`) push train + val through the
    backbone once (`train.feature_views` augmented views of each train image, when cached features
    are fitted with several); their head-only epochs are negligible next to that.
    """
    train, val, test = (int(split_counts.get(k, 0)) for k in ("train", "val", "test"))
    t = train_config.train
    fits_cached_head = t.phase == 2 or fits_on_train_features(t.head_rebalancing)
    train_views = train * (t.feature_views if fits_cached_head else 1)
    if branches_from_trained:
        return RunWork(0, 0, 0, train_views + val + test)
    if t.phase == 2 and not t.phase2_augment:
        return RunWork(0, 0, 0, train_views + val + test)
    images = train if t.phase == 2 else epoch_images
    if t.steps_per_epoch:
        images = min(images, t.steps_per_epoch * t.batch_size)
    if t.validation_steps:
        val = min(val, t.validation_steps * train_config.eval.batch_size)
    feature_pass = train_views + val if t.head_rebalancing != "none" else 0
    return RunWork(t.epochs, images, val, feature_pass + test)


def format_seconds(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class GridProgress:
    """Grid-wide ETA: units left times the seconds per unit measured in this session.

    Call `start(i, epochs_done)` before run i (epochs it had already finished, for a resumed run),
    `epoch(i, epoch)` after each of its epochs, and `finish(i, epochs_run)` after it (with the
    epochs it actually trained, which early stopping may cut), or `skip(i)` for a run that was
    already finished on disk.
    """

    def __init__(self, work: Sequence[RunWork], clock: Callable[[], float] = time.monotonic):
        self.work = list(work)
        self.clock = clock
        self._left = [w.units() for w in self.work]
        self._measured_seconds = 0.0
        self._measured_units = 0.0
        self._run_start: Optional[float] = None
        self._run_units = 0.0  # units of the current run done this session
        self._first_epoch = 0

    def start(self, index: int, epochs_done: int = 0) -> None:
        self._run_start, self._run_units, self._first_epoch = self.clock(), 0.0, epochs_done
        self._left[index] = self.work[index].units() - epochs_done * self.work[index].epoch_units

    def epoch(self, index: int, epoch: int) -> None:
        self._run_units = (epoch - self._first_epoch) * self.work[index].epoch_units

    def finish(self, index: int, epochs_run: Optional[int] = None) -> None:
        work = self.work[index]
        epochs = work.epochs if epochs_run is None else epochs_run
        self._measured_units += (epochs - self._first_epoch) * work.epoch_units + FORWARD_COST * work.once_forward
        if self._run_start is not None:
            self._measured_seconds += self.clock() - self._run_start
        self._left[index], self._run_start, self._run_units = 0.0, None, 0.0

    def skip(self, index: int) -> None:
        self._left[index] = 0.0

    def seconds_per_unit(self) -> Optional[float]:
        seconds, units = self._measured_seconds, self._measured_units
        if self._run_start is not None:
            seconds += self.clock() - self._run_start
            units += self._run_units
        return seconds / units if units > 0 and seconds > 0 else None

    def eta_seconds(self) -> Optional[float]:
        per_unit = self.seconds_per_unit()
        if per_unit is None:
            return None
        return max(0.0, sum(self._left) - self._run_units) * per_unit

    def eta(self) -> GridEta:
        return GridEta(self.eta_seconds(), self.seconds_per_unit())

    def describe(self) -> str:
        return describe_eta(self.eta())


def describe_eta(eta: GridEta) -> str:
    """`grid ETA 4m10s (0.052 s/img)`, or `grid ETA ? (measuring)` before any work is measured."""
    if eta.seconds is None or eta.seconds_per_image is None:
        return "grid ETA ? (measuring)"
    return f"grid ETA {format_seconds(eta.seconds)} ({eta.seconds_per_image:.3f} s/img)"

"""Structured progress: what a long library call reports while it works, as data.

Library functions take an `on_event` sink (a callable taking one event) instead of printing; the
CLI turns each event into its terminal line (`serengeti_tf_cli/progress.py`) and an embedding
program can log, count or ignore them. Messages may mark settings with `errors.setting(name)`,
which the sink renders (the CLI as flags). Base module: imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Union


@dataclass(frozen=True)
class Step:
    """What the call is doing or has just done, in one human sentence; `level` 1 is a detail of the
    step above it (shown indented)."""

    message: str
    level: int = 0


@dataclass(frozen=True)
class Warning:  # used as `events.Warning`, so no call site shadows the builtin
    """Something the user should know that does not stop the call (a stale cache ignored, a slow
    machine, a checkpoint skipped); `level` as for `Step`."""

    message: str
    level: int = 0


@dataclass(frozen=True)
class EpochEnd:
    """A training epoch finished: its row of metrics.csv (`epoch`, `loss`, `accuracy`, `val_loss`,
    `val_accuracy`, `val_macro_f1`, `learning_rate`, `seconds`), the best score so far and where
    it was, and the estimated seconds left in this run (0 when it was the last epoch)."""

    epoch: int
    epochs: int
    metrics: Mapping[str, float]
    best_score: float
    best_epoch: int
    eta_seconds: float
    stopped_early: bool = False


@dataclass(frozen=True)
class GridEta:
    """The grid-wide estimate of an experiment: seconds left and the measured seconds per training
    image, both None before any work was measured (`train.progress.GridProgress`)."""

    seconds: Optional[float]
    seconds_per_image: Optional[float]


@dataclass(frozen=True)
class InRun:
    """An event of one run of a grid (shown indented under the run's line); after an epoch it
    carries the grid-wide estimate."""

    event: "Event"
    grid_eta: Optional[GridEta] = field(default=None)


Event = Union[Step, Warning, EpochEnd, InRun]
EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The sink of a caller that wants no progress."""

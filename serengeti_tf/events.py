"""Structured progress: what a long library call reports while it works, as data.

Library functions take an `on_event` sink (a callable taking one event) instead of printing; the
CLI turns each event into its terminal line (`serengeti_tf_cli/progress.py`) and an embedding
program can log, count or ignore them. Messages may mark settings with `errors.setting(name)`,
which the sink renders (the CLI as flags). Base module: imports nothing heavy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Optional, TypeVar, Union

T = TypeVar("T")


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


@dataclass(frozen=True)
class Progress:
    """How far a long loop is: `done` of `total` (None when unknown) `unit`s of `task` (e.g. 120
    of 5000 "img" of "predict"); `finished` on the last event of the task. A `transient` task is
    a detail whose bar the CLI clears when it finishes."""

    task: str
    done: int
    total: Optional[int]
    unit: str
    finished: bool = False
    transient: bool = False


Event = Union[Step, Warning, EpochEnd, InRun, Progress]
EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The sink of a caller that wants no progress."""


class Tracker:
    """Counts the work of one task and reports it to `sink` as `Progress` events: the first one at
    once, then at most one every `interval` seconds (a loop over millions of items sends a few
    events a second, not millions), and always the final one from `finish()`. Usable as a context
    manager, which finishes the task on the way out (also after an error)."""

    def __init__(self, sink: EventSink, task: str, total: Optional[int] = None, unit: str = "it",
                 initial: int = 0, transient: bool = False, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        if total is not None and total < 0:
            raise ValueError(f"total must be None or >= 0, got {total}")
        self.sink, self.task, self.total, self.unit = sink, task, total, unit
        self.transient, self.interval, self.clock = transient, interval, clock
        self.done = initial
        self.finished = False
        self._last = clock()
        self._emit(False)

    def _emit(self, finished: bool) -> None:
        self.sink(Progress(self.task, self.done, self.total, self.unit, finished, self.transient))

    def advance(self, n: int = 1) -> None:
        """Counts `n` more units done; reports them when `interval` has passed since the last report."""
        self.done += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._emit(False)

    def finish(self) -> None:
        """Sends the final event (once)."""
        if not self.finished:
            self.finished = True
            self._emit(True)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def track(items: Iterable[T], sink: EventSink, task: str, total: Optional[int] = None, unit: str = "it",
          transient: bool = False, **tracker_args) -> Iterator[T]:
    """Yields `items`, reporting the count yielded so far to `sink` as `Progress` (see `Tracker`;
    `total` defaults to `len(items)` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Tracker(sink, task, total, unit, transient=transient, **tracker_args) as tracker:
        for item in items:
            yield item
            tracker.advance()

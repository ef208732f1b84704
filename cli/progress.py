"""The terminal lines of the library's progress events (`serengeti_tf.events`): the one place that
decides how progress reads."""

from __future__ import annotations

from typing import Optional

import click

from serengeti_tf import events
from serengeti_tf_cli.flags import message_text

INDENT = "    "


def epoch_line(event: events.EpochEnd) -> str:
    """`epoch 3/30  loss 1.2345  acc ...  (best 0.4000 @ 2)  12.3s  ETA 5m10s`."""
    from serengeti_tf.train.progress import format_seconds

    m = event.metrics
    tail = ("early stop" if event.stopped_early
            else f"ETA {format_seconds(event.eta_seconds)}" if event.eta_seconds > 0 else "done")
    return (f"epoch {event.epoch}/{event.epochs}  loss {m['loss']:.4f}  acc {m['accuracy']:.4f}  "
            f"val_loss {m['val_loss']:.4f}  val_acc {m['val_accuracy']:.4f}  "
            f"val_macro_f1 {m['val_macro_f1']:.4f}  (best {event.best_score:.4f} @ {event.best_epoch})  "
            f"{m['seconds']:.1f}s  {tail}")


def event_line(event: events.Event, command: Optional[click.Command] = None) -> str:
    """The terminal line of one event (settings in messages shown as `command`'s flags)."""
    if isinstance(event, events.Step):
        return INDENT * event.level + message_text(event.message, command)
    if isinstance(event, events.Warning):
        return INDENT * event.level + "warning: " + message_text(event.message, command)
    if isinstance(event, events.EpochEnd):
        return epoch_line(event)
    if isinstance(event, events.Progress):
        raise TypeError("a Progress event is drawn as a bar (ProgressBars), not as a line")
    if isinstance(event, events.InRun):
        from serengeti_tf.train.progress import describe_eta

        line = INDENT + event_line(event.event, command)
        return line if event.grid_eta is None else f"{line}  | {describe_eta(event.grid_eta)}"
    raise TypeError(f"not a progress event: {event!r}")


def echo(event: events.Event) -> None:
    """An event sink of lines only: each event as its line on stdout (Progress events are dropped;
    `Terminal` draws them)."""
    if not isinstance(event, events.Progress):
        click.echo(event_line(event))


class ProgressBars:
    """Draws `events.Progress` as tqdm bars on stderr, one open bar per task: created by the task's
    first event (starting at its `done`), moved on by later ones, closed by the finished one. A
    transient task's bar is redrawn at most once a second and cleared when it closes; a task
    counted in bytes ("B") shows kB/MB. `cli.main.end_progress_bars` closes bars an error left open."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, event: events.Progress) -> None:
        from tqdm import tqdm

        bar = self.bars.get(event.task)
        if bar is None:
            bar = tqdm(total=event.total, initial=event.done, desc=event.task, unit=event.unit,
                       unit_scale=event.unit == "B", leave=not event.transient,
                       mininterval=1.0 if event.transient else 0.1, dynamic_ncols=True)
            self.bars[event.task] = bar
        elif event.done != bar.n:
            bar.update(event.done - bar.n)
        if event.finished:
            bar.close()
            del self.bars[event.task]


class Terminal:
    """The CLI's event sink for one command: lines on stdout (`echo`), bars on stderr (`ProgressBars`)."""

    def __init__(self) -> None:
        self.bars = ProgressBars()

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Progress):
            self.bars(event)
        else:
            echo(event)

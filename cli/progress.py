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
    if isinstance(event, events.InRun):
        from serengeti_tf.train.progress import describe_eta

        line = INDENT + event_line(event.event, command)
        return line if event.grid_eta is None else f"{line}  | {describe_eta(event.grid_eta)}"
    raise TypeError(f"not a progress event: {event!r}")


def echo(event: events.Event) -> None:
    """The CLI's event sink: each event as its line on stdout."""
    click.echo(event_line(event))

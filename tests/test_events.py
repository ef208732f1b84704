"""`events.Tracker` / `events.track`: Progress events, rate-limited, always ending with the final one."""

from __future__ import annotations

import pytest

from serengeti_tf import events


class Clock:
    """A clock the test moves by hand (no timed tests)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_track_yields_every_item_and_reports_first_and_final_counts():
    seen: list = []
    items = list(events.track(range(1000), seen.append, "reading", unit="img", clock=lambda: 0.0))
    assert items == list(range(1000))
    # The clock never moves: only the opening event and the final one, not one per item.
    assert seen == [events.Progress("reading", 0, 1000, "img"),
                    events.Progress("reading", 1000, 1000, "img", finished=True)]


def test_tracker_reports_at_most_once_per_interval():
    seen: list = []
    clock = Clock()
    with events.Tracker(seen.append, "predict", total=10, unit="img", interval=0.1, clock=clock) as bar:
        for step in range(10):
            clock.now = step * 0.04  # 0.0, 0.04, ... 0.36: a report about every third item
            bar.advance()
    assert [e.done for e in seen] == [0, 4, 7, 10, 10]  # the last one is finish()'s
    assert [e.finished for e in seen] == [False, False, False, False, True]
    assert all(e.total == 10 and e.task == "predict" for e in seen)


def test_tracker_starts_at_initial_counts_by_n_and_finishes_once():
    seen: list = []
    bar = events.Tracker(seen.append, "preparing images", total=50, unit="img", initial=20, clock=lambda: 0.0)
    bar.advance(30)
    bar.finish()
    bar.finish()
    assert [(e.done, e.finished) for e in seen] == [(20, False), (50, True)]


def test_track_of_an_iterator_has_no_total_and_finishes_after_an_error():
    seen: list = []

    def items():
        yield 1
        raise ValueError("bad item")

    with pytest.raises(ValueError):
        for _ in events.track(items(), seen.append, "checking files", unit="folder", transient=True):
            pass
    assert seen[0].total is None and seen[0].transient
    assert seen[-1].finished and seen[-1].done == 1


def test_negative_total_is_refused():
    with pytest.raises(ValueError, match="got -1"):
        events.Tracker(events.ignore, "x", total=-1)

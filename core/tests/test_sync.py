"""The sync runner: retries a failing target, records an alarm when it falls behind and a
recovery when it has caught up; the change feed moves only past what a target committed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from cellbench_core.storage import Database, SampleWriter
from cellbench_core.synctargets import (
    ChangeFeed,
    Positions,
    SyncReport,
    SyncTarget,
    report,
    run_sync,
)


class Flaky(SyncTarget):
    """Fails to open while ``down`` is set; otherwise copies nothing anywhere."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.down.set()
        self.opened = 0
        self.feed = ChangeFeed(Positions())

    def open(self) -> None:
        self.opened += 1
        if self.down.is_set():
            raise ConnectionError("server unreachable")

    def sync_once(self, local: Database) -> SyncReport:
        changes = self.feed.read(local)
        self.feed.advance(changes)
        return report(changes)

    def close(self) -> None:
        """Nothing to release."""


def test_alarm_while_behind_then_recovery(db: Database, wait_until: Callable[..., Any]) -> None:
    target = Flaky()
    alarms: list[str] = []
    stop = threading.Event()
    runner = threading.Thread(target=run_sync, args=(target, db), kwargs={
        "name": "flaky", "interval_s": 0.01, "alarm_after_s": 0.05, "max_backoff_s": 0.02,
        "stop": stop, "on_alarm": alarms.append})
    runner.start()
    try:
        wait_until(lambda: [e for e in db.events() if e.kind == "alarm"], "an alarm",
                   interval=0.01)
        assert target.opened > 1  # retried
        target.down.clear()
        wait_until(lambda: [e for e in db.events() if e.kind == "sync_recovered"],
                   "the recovery", interval=0.01)
    finally:
        stop.set()
        runner.join()
    [alarm] = [e for e in db.events() if e.kind == "alarm"]
    # behind_s is stored rounded to the millisecond, so it may equal the threshold
    assert alarm.data["sync_target"] == "flaky" and alarm.data["behind_s"] >= 0.05
    assert alarms == [alarm.message]


def test_once_raises_the_targets_error(db: Database) -> None:
    with pytest.raises(ConnectionError, match="unreachable"):
        run_sync(Flaky(), db, name="flaky", once=True)


def test_bad_timing_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        run_sync(Flaky(), db, name="flaky", interval_s=0)


def test_feed_reads_again_what_was_not_advanced(db: Database, new_test: Any,
                                                make_rows: Any) -> None:
    test_id = new_test()
    writer = SampleWriter(db)
    writer.submit(make_rows([test_id], 1, 30, aux=True))
    writer.close()
    feed = ChangeFeed(Positions(), max_rows=10)
    first = feed.read(db)
    assert [r[1] for r in first.samples] == list(range(1, 11)) and not first.complete
    assert feed.read(db).samples == first.samples  # not advanced: the same batch again
    feed.advance(first)
    second = feed.read(db)
    assert [r[1] for r in second.samples] == list(range(11, 21))
    assert {r[1] for r in second.sample_aux} <= set(range(11, 21))
    assert second.tests == []  # unchanged since delivered

"""The notifier and sync-target checks: capabilities that receive a station's events or copy its
database, rather than drive hardware."""

from __future__ import annotations

import asyncio
import inspect
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import sqlalchemy as sa

from cellbench_core.plugins import PluginManager
from cellbench_sdk import Alarm, PlanMessage, StepChanged, TestFinished, TestStarted, TestStatus
from cellbench_sdk.notify import EVENT_HOOKS, NotifierContext
from cellbench_sdk.storage import (
    Database,
    SampleRows,
    SampleWriter,
    StepRow,
    TestEnd,
    TestStart,
    open_database,
    schema,
)
from cellbench_sdk.sync import SyncReport, SyncTarget
from cellbench_sdk.testing._checker import Violation, raised, violation

T = TypeVar("T")

#: One event of each kind, as the station hands them to notifiers.
EVENTS: Final = {
    "cellbench_test_started": TestStarted(1, "bench/1", "cycle 1", "cc-cv", "cell-A", 1.7e9),
    "cellbench_step_changed": StepChanged(1, "bench/1", 1, 4, 1, "Charge at 1 A until 4.2 V",
                                          60.0),
    "cellbench_message": PlanMessage(1, "bench/1", 7, "Check the cell's temperature probe"),
    "cellbench_alarm": Alarm("bench/1", 1, "voltage above 4.25 V"),
    "cellbench_test_finished": TestFinished(1, "bench/1", TestStatus.FINISHED, "plan complete",
                                            3600.0),
}


async def _close_twice(subject: str, close: Callable[[], object], timeout_s: float) -> None:
    """Call ``close`` twice (awaiting what it returns), each within ``timeout_s``."""
    for what in ("close()", "a second close()"):
        try:
            async with asyncio.timeout(timeout_s):
                result = close()
                if inspect.isawaitable(result):
                    await result
        except TimeoutError:
            raise violation(subject, what, "close() returns within its timeout",
                            f"no answer within {timeout_s:g} s") from None
        except Exception as err:
            raise violation(subject, what, "close() releases what the notifier holds and is "
                            "idempotent", raised(err)) from err


async def check_notifier(notifier: object, *, event_budget_s: float = 0.5,
                         timeout_s: float = 5.0) -> None:
    """Check ``notifier`` against the notifier contract, as the station calls it.

    It registers with a plugin manager (its hooks are event hooks of cellbench, with their
    arguments) and implements at least one; one event of each kind reaches it on the running
    event loop, and each hook returns nothing, raises nothing and returns within
    ``event_budget_s`` (slow work goes to a thread or task). A ``close()``, if it has one, is
    awaited when it returns an awaitable and may be called twice.
    """
    subject = f"notifier {type(notifier).__name__}"
    manager = PluginManager()
    reason = manager.register(subject, notifier)
    if reason:
        raise violation(subject, "registration", "a notifier's hook implementations are event "
                        "hooks of cellbench, taking only the arguments their hookspecs name "
                        "(subclass cellbench_sdk.notify.Notifier)", reason)
    implemented = [hook for hook in EVENT_HOOKS
                   if manager.hooks.parse_hookimpl_opts(notifier, hook) is not None]
    if not implemented:
        raise violation(subject, "its event hooks", "a notifier implements at least one event "
                        f"hook ({', '.join(EVENT_HOOKS)})", "none found")
    for hook, event in EVENTS.items():
        what = f"{hook}({type(event).__name__}(...))"
        start = time.perf_counter()
        try:
            results = getattr(manager.hook, hook)(event=event)
        except Exception as err:
            raise violation(subject, what, "an event hook does not raise: a notifier reports "
                            "its own failures (a log line) and keeps going", raised(err)) from err
        elapsed = time.perf_counter() - start
        if elapsed > event_budget_s:
            raise violation(subject, what, "an event hook returns at once (it runs on the "
                            "station's event loop): slow work goes to a thread or a task",
                            f"returned after {elapsed:.3f} s (budget {event_budget_s:g} s)")
        if any(result is not None for result in results):
            raise violation(subject, what, "an event hook returns nothing", repr(results))
    close = getattr(notifier, "close", None)
    if callable(close):
        await _close_twice(subject, close, timeout_s)


# --- sync targets -------------------------------------------------------------------------------


class _Station:
    """A small station database: two tests on two channels, samples with an aux value, steps,
    events; more of each on :meth:`go_on`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.add_battery("cell-A", "NMC", 3.0, created_unix_s=1.7e9)
        self.tests = db.start_tests([TestStart(
            name=f"cycle {n}", channel=f"bench/{n}", driver="kit", battery="cell-A",
            plan_name="cycle", plan_source="cycle.yaml", plan_text="steps: []",
            sample_period_s=1.0, station="kit", start_unix_s=1.7e9) for n in (1, 2)])
        self.seq = 0
        self.step = 0

    def go_on(self, samples: int) -> None:
        """``samples`` more samples and a step of each test, and an event; committed."""
        seq = np.arange(self.seq + 1, self.seq + samples + 1, dtype=np.int64)
        t = seq.astype(np.float64)
        writer = SampleWriter(self.db)
        try:
            for test_id in self.tests:
                writer.submit(SampleRows(
                    test_id=np.full(samples, test_id, dtype=np.int64), seq=seq, test_time_s=t,
                    unix_time_s=1.7e9 + t, step_time_s=t, voltage_v=3.6 + t / 1e4,
                    current_a=np.full(samples, 1.5), power_w=5.4 + t / 1e4,
                    temperature_c=np.full(samples, 25.0), step_index=np.zeros(samples, np.int64),
                    plan_line=np.full(samples, 3, np.int64), cycle=np.ones(samples, np.int64),
                    ah=t / 2400, wh=t / 650, aux={"cell_c": np.where(seq % 2 == 0, 25.5, np.nan)}))
                writer.submit_step(StepRow(
                    test_id=test_id, step_no=self.step + 1, step_index=0, plan_line=3, cycle=1,
                    mode="cc", text="Charge at 1.5 A", start_seq=int(seq[0]),
                    end_seq=int(seq[-1]), start_test_time_s=float(t[0]),
                    end_test_time_s=float(t[-1]), ah=0.1, wh=0.4, end_reason="time"))
            writer.flush()
        finally:
            writer.close()
        self.seq += samples
        self.step += 1
        self.db.add_event(kind="message", message=f"{self.seq} samples", test_id=self.tests[0],
                          channel="bench/1", unix_time_s=1.7e9 + self.seq)


class _SyncChecker:
    def __init__(self, subject: str, local: Database, max_rounds: int) -> None:
        self.subject, self.local, self.max_rounds = subject, local, max_rounds

    def call(self, what: str, call: Callable[[], T], rule: str) -> T:
        try:
            return call()
        except Violation:
            raise
        except Exception as err:
            raise violation(self.subject, what, rule, raised(err)) from err

    def sync_once(self, target: SyncTarget, what: str) -> SyncReport:
        report: object = self.call(what, lambda: target.sync_once(self.local),
                                   "sync_once() copies a batch of what the destination lacks")
        if not (isinstance(report, SyncReport) and report.rows >= report.samples >= 0
                and math.isfinite(report.backlog_age_s) and report.backlog_age_s >= 0):
            raise violation(self.subject, what, "sync_once() returns a SyncReport: rows >= "
                            "samples >= 0, a finite backlog_age_s >= 0", repr(report))
        return report

    def catch_up(self, target: SyncTarget, when: str) -> None:
        """sync_once until caught up, then once more: it must copy nothing."""
        for _ in range(self.max_rounds):
            if self.sync_once(target, f"sync_once() {when}").caught_up:
                break
        else:
            raise violation(self.subject, f"sync_once() {when}", "a target catches up with a "
                            "small database in a few calls", f"not caught up after "
                            f"{self.max_rounds} calls")
        again = self.sync_once(target, f"sync_once() after catching up {when}")
        if again.rows or not again.caught_up:
            raise violation(self.subject, f"sync_once() after catching up {when}",
                            "a target that caught up copies nothing more until the station "
                            "database changes (nothing is copied twice)", repr(again))


def check_sync_target(make: Callable[[], SyncTarget], *, max_rounds: int = 50) -> None:
    """Check the targets ``make`` builds against the sync-target contract, with a small station
    database of its own (SQLite in a temporary folder).

    A target closes before it opens, opens, catches up with the database in at most
    ``max_rounds`` calls of ``sync_once`` and then copies nothing; it catches up again after
    more rows were committed, and closes twice. A new target of the same settings resumes from
    what the destination holds: it copies no sample again.
    """
    with tempfile.TemporaryDirectory(prefix="cellbench-kit-") as folder:
        local = open_database(f"sqlite:///{Path(folder) / 'station.db'}")
        try:
            _check_sync(make, local, max_rounds)
        finally:
            local.close()


def _check_sync(make: Callable[[], SyncTarget], local: Database, max_rounds: int) -> None:
    station = _Station(local)
    station.go_on(120)
    target: object = make()
    subject = f"sync target {type(target).__name__}"
    if not isinstance(target, SyncTarget):
        raise violation(subject, "the factory", "a sync target's factory returns a "
                        "cellbench_sdk.sync.SyncTarget", f"returned {target!r}")
    check = _SyncChecker(subject, local, max_rounds)
    rule = "close() is idempotent and safe before open()"
    check.call("close() before open()", target.close, rule)
    check.call("open()", target.open, "open() connects to the destination")
    try:
        check.catch_up(target, "on a new destination")
        station.go_on(80)
        local.finish_tests([TestEnd(station.tests[0], "finished", "plan complete", 1.7e9 + 999)])
        check.catch_up(target, "after more rows were committed")
    finally:
        check.call("close()", target.close, rule)
    check.call("a second close()", target.close, rule)

    fresh = make()
    check.call("open() of a new target", fresh.open, "open() connects to the destination")
    try:
        report = check.sync_once(fresh, "sync_once() of a new target on the same destination")
        if report.samples:
            raise violation(subject, "sync_once() of a new target on the same destination",
                            "a target resumes from the positions its destination holds: no "
                            "sample is copied twice", repr(report))
    finally:
        check.call("close() of the new target", fresh.close, rule)


# --- notifiers with an outbox --------------------------------------------------------------------


class NotifierStation:
    """A station database (SQLite in ``folder``) to start outbox notifiers on, as the station
    does: a test with an hour of samples on channel ``bench/1`` (``test_id``), the alarms the
    notifiers raise (``alarms``), and their outbox rows."""

    def __init__(self, folder: Path, station: str = "bench") -> None:
        self.db = open_database(f"sqlite:///{folder / 'station.db'}")
        self.station = station
        self.base_dir = folder
        self.alarms: list[str] = []
        self._started: list[Any] = []
        made = _Station(self.db)
        made.go_on(3600)
        self.test_id = made.tests[0]

    def start(self, notifier: T, name: str = "notifier", control: Any = None) -> T:
        """Start ``notifier`` (an :class:`~cellbench_sdk.notify.OutboxNotifier`) on the
        database under ``name``; :meth:`close` closes it."""
        context = NotifierContext(name, self.station, self.db, self.base_dir,
                                  self.alarms.append, control)
        notifier.start(context)  # type: ignore[attr-defined]
        self._started.append(notifier)
        return notifier

    def outbox(self, name: str = "notifier") -> list[tuple[str, str, int]]:
        """The outbox rows of notifier ``name`` in order: (destination, status, attempts)."""
        table = schema.notify_outbox
        query = (sa.select(table.c.destination, table.c.status, table.c.attempts)
                 .where(table.c.notifier == name).order_by(table.c.id))
        with self.db.engine.connect() as connection:
            return [(row[0], row[1], row[2]) for row in connection.execute(query)]

    def events(self, kind: str) -> list[str]:
        """The messages of the station's events of ``kind`` (``notifier_failed``, ...)."""
        return [e.message for e in self.db.events() if e.kind == kind]

    def close(self) -> None:
        """Close the notifiers started here, then the database."""
        for notifier in self._started:
            notifier.close()
        self._started.clear()
        self.db.close()

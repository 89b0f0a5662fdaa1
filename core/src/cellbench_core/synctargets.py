"""Sync targets: the contract every target keeps, the feed of local changes it copies, and the
loop that runs a target beside a station (docs/sync.md).

A target copies a local database (batteries, channels, tests, samples, aux values, steps and
events) somewhere else, continuously and idempotently. It learns from its own destination how far
it got (:class:`Positions`), asks a :class:`ChangeFeed` for what lies beyond, writes that in one
transaction of the destination, and only then moves the feed on. Every row a feed reads is
committed locally (readers never see uncommitted rows); a crash anywhere re-reads from the
destination's positions, and re-delivered rows replace themselves by their natural keys.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cellbench_core.events import TestStatus
from cellbench_core.storage import Database, schema
from cellbench_core.storage.records import driver_message

logger = logging.getLogger(__name__)

#: Row tuples in the column order of their table in :mod:`cellbench_core.storage.schema`.
Row = tuple[Any, ...]

#: On a server database, events of concurrent transactions may commit out of id order; a feed
#: therefore looks back this many ids below its position for events that committed late.
EVENT_LOOKBACK_IDS = 1000

#: Keys per ``IN (...)`` list a target deletes by: below every database's parameter limit
#: (SQL Server allows about 2,100 parameters per statement).
IN_LIST_KEYS = 1000


@dataclass(frozen=True, slots=True)
class TestPosition:
    """How much of one test a target holds: every sample up to ``seq``, every step up to
    ``step_no``, and (``final``) the test's row in a status other than ``running``."""

    seq: int = 0
    step_no: int = 0
    final: bool = False

    __test__ = False  # not a pytest test class


@dataclass(slots=True)
class Positions:
    """How much of a local database a target holds: per test, and the highest event id."""

    tests: dict[int, TestPosition] = field(default_factory=dict)
    event_id: int = 0


@dataclass(slots=True)
class Changes:
    """Committed local rows a target does not hold yet, as row tuples in table column order.

    ``batteries``, ``channels`` and ``tests`` hold rows that are new or changed since the feed
    last moved on; the rest hold new rows only. ``sample_ranges`` maps a test id to the
    ``(first, last)`` seq of its samples here (aux rows cover the same range), ``step_ranges``
    likewise for step numbers. ``complete`` is True when these are all the local rows that were
    committed when they were read. ``oldest_unix_s`` is the measurement time of the oldest sample
    here (None without samples).
    """

    batteries: list[Row] = field(default_factory=list)
    channels: list[Row] = field(default_factory=list)
    tests: list[Row] = field(default_factory=list)
    samples: list[Row] = field(default_factory=list)
    sample_aux: list[Row] = field(default_factory=list)
    steps: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    sample_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    step_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    complete: bool = True
    oldest_unix_s: float | None = None
    positions: dict[int, TestPosition] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    #: Tests found behind here, and the last seq each had then: live rows start after it.
    live_from: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.tables().values())

    def tables(self) -> dict[str, list[Row]]:
        """The rows by table name, in an order that satisfies foreign keys."""
        return {"batteries": self.batteries, "channels": self.channels, "tests": self.tests,
                "samples": self.samples, "sample_aux": self.sample_aux, "steps": self.steps,
                "events": self.events}


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row the destination refused for what it holds (a value its column cannot store, a
    constraint it breaks): left out of its batch so that the rest goes on, and reported.

    ``key`` names the row by its primary key (``id=7``, ``test_id=3 seq=51``); ``test_id`` is
    the test it belongs to (None for a battery, a channel or an event of no test)."""

    table: str
    key: str
    test_id: int | None
    reason: str

    @classmethod
    def of(cls, table: str, row: Row, error: BaseException) -> RefusedRow:
        """The report of ``row`` of ``table`` refused with ``error``."""
        columns = [c.name for c in schema.metadata.tables[table].columns]
        values = dict(zip(columns, row, strict=False))
        key = " ".join(f"{c.name}={values.get(c.name)}"
                       for c in schema.metadata.tables[table].primary_key.columns)
        owner = values.get("id" if table == "tests" else "test_id")
        return cls(table, key, None if owner is None else int(owner), driver_message(error)[:300])


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` refuses the data written rather than failing the connection: a PEP 249
    ``DataError`` or ``IntegrityError`` of any driver (or SQLAlchemy's wrapper of one). Every
    other error (a cut connection, a timeout, a lock) is transient: the batch is tried again
    whole."""
    return any(cls.__name__ in ("DataError", "IntegrityError") for cls in type(error).__mro__)


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one :meth:`SyncTarget.sync_once` did: ``rows`` written (of them ``samples``),
    ``caught_up`` when the target then held everything committed locally when it read,
    ``backlog_age_s``, how old the oldest sample it moved was (0 when it moved none), and
    ``live_age_s``, how old the oldest of the live rows it sent ahead of a backlog was when
    they were committed (0 when it sent none: see :meth:`ChangeFeed.read_live`).
    ``refused`` are the rows the destination refused and the batch went on without."""

    rows: int
    samples: int
    caught_up: bool
    backlog_age_s: float
    live_age_s: float = 0.0
    refused: tuple[RefusedRow, ...] = ()


class SyncTarget(ABC):
    """A place a local database is copied to, continuously: a central server, a backup file.

    A descriptor of kind ``Kind.SYNC_TARGET`` builds one from its validated settings. The runner
    calls :meth:`open` once, :meth:`sync_once` again and again, and :meth:`close` at the end or
    after an error (then :meth:`open` again to retry). Every method may raise; nothing a target
    does may be lost or duplicated by an error at any point.
    """

    @abstractmethod
    def open(self) -> None:
        """Connect to the destination (create its tables if needed) and read its positions."""

    @abstractmethod
    def sync_once(self, local: Database) -> SyncReport:
        """Copy one batch of what the destination lacks from ``local``, in one transaction."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection to the destination; safe to call again or before open()."""


class ChangeFeed:
    """Reads, from a local database, the committed rows a target does not hold yet.

    Start it with the positions the target holds; after the target committed a :meth:`read`'s
    changes, :meth:`advance` past them. At most about ``max_rows`` samples are read at a time
    (shared among the running tests) so that a large backlog moves in bounded transactions.

    A test whose backlog one read could not take whole is *behind*. :meth:`read_live` reads
    the samples such tests committed since (live first, backlog behind): the target writes
    them ahead of the backlog, by natural key, and :meth:`advance_live` moves past them. The
    positions (what the target holds of each test from its first sample on, unbroken) move
    only with :meth:`read`: the backlog delivers the live rows once more when it gets there,
    replacing them, and a target that restarts finds its positions as before.
    """

    def __init__(self, positions: Positions, max_rows: int = 200_000) -> None:
        self._max_rows = 1
        self.max_rows = max_rows
        self._positions = dict(positions.tests)
        self._event_id = positions.event_id
        self._recent_events: set[int] = set()  # delivered ids within the look-back window
        self._active: set[int] | None = None  # tests not yet wholly held; None before the 1st read
        self._max_test_id = 0
        self._sent: dict[tuple[str, int], Row] = {}  # last delivered battery/channel/test rows
        self._live: dict[int, int] = {}  # tests behind: the last seq read live

    @property
    def max_rows(self) -> int:
        """Samples per :meth:`read` at most; a target may change it between reads."""
        return self._max_rows

    @max_rows.setter
    def max_rows(self, rows: int) -> None:
        if rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {rows}")
        self._max_rows = rows

    def read(self, local: Database) -> Changes:
        """The committed rows the target lacks, all read in one snapshot of ``local``."""
        with _snapshot(local) as connection:
            return self._read(connection)

    def read_live(self, local: Database) -> Changes:
        """The samples (and their aux values) that the tests behind committed since the last
        :meth:`read_live` (the newest ``max_rows`` of them, shared among those tests), with
        their ranges; nothing else, and no positions. Empty while no test is behind."""
        changes = Changes()
        if not self._live:
            return changes
        limit = max(1, self._max_rows // len(self._live))
        with _snapshot(local) as connection:
            queries = _TestQueries(connection)
            try:
                for test_id, after in sorted(self._live.items()):
                    after = max(after, self._positions.get(test_id, TestPosition()).seq)
                    rows = queries.run("newest", test_id=test_id, after=after, limit=limit)
                    if not rows:
                        continue
                    rows.reverse()
                    first, last = int(rows[0][1]), int(rows[-1][1])
                    changes.samples.extend(rows)
                    changes.sample_ranges[test_id] = (first, last)
                    changes.sample_aux.extend(queries.run(
                        "sample_aux", test_id=test_id, after=first - 1, last=last))
                    oldest = float(rows[0][3])
                    if changes.oldest_unix_s is None or oldest < changes.oldest_unix_s:
                        changes.oldest_unix_s = oldest
            finally:
                queries.close()
        return changes

    def advance_live(self, changes: Changes) -> None:
        """Move past the live rows of a :meth:`read_live`: the target has committed them."""
        for test_id, (_, last) in changes.sample_ranges.items():
            if test_id in self._live:
                self._live[test_id] = max(self._live[test_id], last)

    def advance(self, changes: Changes) -> None:
        """Move past ``changes``: the target has committed them."""
        assert self._active is not None, "advance() before read()"
        for name in ("batteries", "channels", "tests"):
            for row in changes.tables()[name]:
                self._sent[name, int(row[0])] = row
        self._positions.update(changes.positions)
        for test_id, last_seq in changes.live_from.items():
            self._live.setdefault(test_id, last_seq)
        for test_id, held in changes.positions.items():
            if test_id in self._live and held.seq >= self._live[test_id]:
                del self._live[test_id]  # the backlog has reached the live rows
        for test_id in changes.done:
            self._live.pop(test_id, None)
            self._active.discard(test_id)
            self._sent.pop(("tests", test_id), None)
        for row in changes.events:
            self._recent_events.add(int(row[0]))
            self._event_id = max(self._event_id, int(row[0]))
        horizon = self._event_id - EVENT_LOOKBACK_IDS
        self._recent_events = {i for i in self._recent_events if i > horizon}

    def _read(self, connection: Connection) -> Changes:
        changes = Changes()
        tests = self._tests(connection)
        assert self._active is not None
        for name, table in (("batteries", schema.batteries), ("channels", schema.channels)):
            for row in connection.execute(sa.select(table).order_by(table.c.id)):
                if self._sent.get((name, int(row[0]))) != tuple(row):
                    changes.tables()[name].append(tuple(row))
        for row in tests:
            if self._sent.get(("tests", int(row.id))) != tuple(row):
                changes.tests.append(tuple(row))
        status = {int(row.id): row.status for row in tests}
        limit = max(1, self._max_rows // max(1, len(self._active)))
        queries = _TestQueries(connection)
        try:
            for test_id in sorted(self._active & status.keys()):
                self._read_test(queries, test_id, limit, status[test_id], changes)
        finally:
            queries.close()
        self._read_events(connection, changes)
        return changes

    def _tests(self, connection: Connection) -> list[sa.Row[Any]]:
        """Local tests that are new or not yet wholly held by the target (on the first read:
        all tests, deciding which the target already holds wholly)."""
        table = schema.tests
        query = sa.select(table).order_by(table.c.id)
        if self._active is None:
            rows = list(connection.execute(query))
            queries = _TestQueries(connection)
            try:
                self._active = {int(r.id) for r in rows if not self._held(queries, int(r.id))}
            finally:
                queries.close()
        else:
            wanted = table.c.id > self._max_test_id
            if self._active:
                wanted = sa.or_(wanted, table.c.id.in_(sorted(self._active)))
            rows = list(connection.execute(query.where(wanted)))
            self._active.update(int(r.id) for r in rows)
        self._max_test_id = max([self._max_test_id, *(int(r.id) for r in rows)])
        return [r for r in rows if int(r.id) in self._active]

    def _held(self, queries: _TestQueries, test_id: int) -> bool:
        held = self._positions.get(test_id)
        if held is None or not held.final:
            return False
        [(last_seq,)] = queries.run("last_seq", test_id=test_id)
        [(last_step,)] = queries.run("last_step", test_id=test_id)
        return (last_seq or 0) == held.seq and (last_step or 0) == held.step_no

    def _read_test(self, queries: _TestQueries, test_id: int, limit: int, status: str,
                   changes: Changes) -> None:
        held = self._positions.get(test_id, TestPosition())
        rows = queries.run("samples", test_id=test_id, after=held.seq, limit=limit)
        seq = held.seq
        if rows:
            seq = int(rows[-1][1])
            changes.samples.extend(rows)
            changes.sample_ranges[test_id] = (int(rows[0][1]), seq)
            changes.sample_aux.extend(
                queries.run("sample_aux", test_id=test_id, after=held.seq, last=seq))
            first_unix_s = float(rows[0][3])
            if changes.oldest_unix_s is None or first_unix_s < changes.oldest_unix_s:
                changes.oldest_unix_s = first_unix_s
        # A step goes with its last sample: a reader never finds a step beyond the samples.
        step_rows = queries.run("steps", test_id=test_id, after=held.step_no, last=seq)
        step_no = held.step_no
        if step_rows:
            step_no = int(step_rows[-1][1])
            changes.steps.extend(step_rows)
            changes.step_ranges[test_id] = (int(step_rows[0][1]), step_no)
        all_read = len(rows) < limit
        changes.complete = changes.complete and all_read
        if not all_read and test_id not in self._live:
            [(last_seq,)] = queries.run("last_seq", test_id=test_id)
            changes.live_from[test_id] = int(last_seq)
        final = status != TestStatus.RUNNING.value
        changes.positions[test_id] = TestPosition(seq, step_no, final)
        if final and all_read:
            changes.done.add(test_id)

    def _read_events(self, connection: Connection, changes: Changes) -> None:
        table = schema.events
        lookback = 0 if connection.dialect.name == "sqlite" else EVENT_LOOKBACK_IDS
        query = (sa.select(table).where(table.c.id > max(0, self._event_id - lookback))
                 .order_by(table.c.id).limit(self._max_rows))
        rows = [tuple(r) for r in connection.execute(query)]
        changes.complete = changes.complete and len(rows) < self._max_rows
        changes.events.extend(r for r in rows if int(r[0]) not in self._recent_events)


_SAMPLES, _AUX, _STEPS = schema.samples, schema.sample_aux, schema.steps
#: The queries made for every test, with their parameters as bind parameters.
_TEST_QUERIES: dict[str, sa.Select[Any]] = {
    "samples": sa.select(_SAMPLES)
    .where(_SAMPLES.c.test_id == sa.bindparam("test_id"), _SAMPLES.c.seq > sa.bindparam("after"))
    .order_by(_SAMPLES.c.seq).limit(sa.bindparam("limit")),
    "newest": sa.select(_SAMPLES)
    .where(_SAMPLES.c.test_id == sa.bindparam("test_id"), _SAMPLES.c.seq > sa.bindparam("after"))
    .order_by(_SAMPLES.c.seq.desc()).limit(sa.bindparam("limit")),
    "sample_aux": sa.select(_AUX)
    .where(_AUX.c.test_id == sa.bindparam("test_id"), _AUX.c.seq > sa.bindparam("after"),
           _AUX.c.seq <= sa.bindparam("last"))
    .order_by(_AUX.c.seq, _AUX.c.name),
    "steps": sa.select(_STEPS)
    .where(_STEPS.c.test_id == sa.bindparam("test_id"),
           _STEPS.c.step_no > sa.bindparam("after"), _STEPS.c.end_seq <= sa.bindparam("last"))
    .order_by(_STEPS.c.step_no),
    "last_seq": sa.select(sa.func.max(_SAMPLES.c.seq))
    .where(_SAMPLES.c.test_id == sa.bindparam("test_id")),
    "last_step": sa.select(sa.func.max(_STEPS.c.step_no))
    .where(_STEPS.c.test_id == sa.bindparam("test_id")),
}


@contextmanager
def _snapshot(local: Database) -> Iterator[Connection]:
    """A connection to ``local`` that reads one snapshot, rolled back afterwards."""
    with local.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # pysqlite starts no transaction for SELECT: begin one for a single snapshot.
            connection.exec_driver_sql("BEGIN")
        else:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        try:
            yield connection
        finally:
            connection.rollback()


class _TestQueries:
    """The per-test queries, compiled once and run on the DBAPI cursor of the read's own
    connection (same snapshot): thousands of tests per read make SQLAlchemy's per-statement
    work the largest cost otherwise."""

    def __init__(self, connection: Connection) -> None:
        dialect = connection.dialect
        self._compiled = {name: query.compile(dialect=dialect)
                          for name, query in _TEST_QUERIES.items()}
        self._sql = {name: str(compiled) for name, compiled in self._compiled.items()}
        self._cursor = connection.connection.cursor()

    def run(self, name: str, **params: int) -> list[Row]:
        """The rows of query ``name`` with these parameters, as tuples."""
        compiled = self._compiled[name]
        values = compiled.construct_params(params)  # with any the dialect adds (OFFSET 0)
        if compiled.positional:
            assert compiled.positiontup is not None
            self._cursor.execute(self._sql[name], [values[p] for p in compiled.positiontup])
        else:
            self._cursor.execute(self._sql[name], values)
        return [tuple(row) for row in self._cursor.fetchall()]

    def close(self) -> None:
        """Close the cursor."""
        self._cursor.close()


def in_chunks(keys: Iterable[int]) -> Iterator[list[int]]:
    """``keys`` sorted, in lists of at most :data:`IN_LIST_KEYS` (for ``IN (...)`` lists)."""
    ordered = sorted(keys)
    for start in range(0, len(ordered), IN_LIST_KEYS):
        yield ordered[start : start + IN_LIST_KEYS]


class RowSink(Protocol):
    """What :func:`write_changes` writes through: one transaction of a target's destination,
    whose tables are named and laid out as the station's (columns in table order)."""

    def delete_ids(self, table: str, ids: list[int]) -> None:
        """Delete the rows of ``table`` whose ``id`` is in ``ids`` (at most
        :data:`IN_LIST_KEYS`, sorted)."""

    def delete_ranges(self, table: str, key: str, ranges: list[tuple[int, int, int]]) -> None:
        """Delete, for each ``(test_id, first, last)``, the rows of ``table`` of that test whose
        ``key`` column lies between ``first`` and ``last`` (inclusive)."""

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        """Insert ``rows`` (never empty) into ``table``."""

    def savepoint(self) -> AbstractContextManager[object]:
        """A savepoint of the transaction: what the block wrote is rolled back to it when the
        block raises (and the error passes on), kept when it returns."""


def write_changes(changes: Changes, sink: RowSink) -> list[RefusedRow]:
    """Write ``changes`` into a destination so that each row replaces any copy already there:
    batteries, channels, tests and events by ``id``; the samples, aux values and steps of each
    test by their ``seq`` or ``step_no`` range. A batch written twice leaves what one leaves.
    Tables go in foreign-key order.

    When the destination refuses the batch for a row it holds (:func:`is_refusal`), the batch
    is written again in halves, under savepoints, down to the rows it refuses: they are left
    out and returned, and every other row is written. Any other error passes on, leaving the
    transaction to the caller to roll back."""
    try:
        with sink.savepoint():
            _write_whole(changes, sink)
        return []
    except Exception as error:
        if not is_refusal(error):
            raise
        logger.warning("the destination refused a batch (%s): finding the rows it refuses",
                       driver_message(error)[:300])
    refused: list[RefusedRow] = []
    tables = changes.tables()
    for name in ("batteries", "channels", "tests", "events"):
        rows = sorted(tables[name], key=lambda row: int(row[0]))
        for start in range(0, len(rows), IN_LIST_KEYS):
            _write_apart(sink, name, rows[start:start + IN_LIST_KEYS], True, refused)
    for name, key, ranges in _RANGED:
        if getattr(changes, ranges):
            sink.delete_ranges(name, key, [(test_id, first, last) for test_id, (first, last)
                                           in sorted(getattr(changes, ranges).items())])
        _write_apart(sink, name, tables[name], False, refused)
    return refused


#: The tables written by key range per test: name, key column, the ranges' Changes field.
_RANGED = (("samples", "seq", "sample_ranges"), ("sample_aux", "seq", "sample_ranges"),
           ("steps", "step_no", "step_ranges"))


def _write_apart(sink: RowSink, table: str, rows: Sequence[Row], by_id: bool,
                 refused: list[RefusedRow]) -> None:
    """Write ``rows`` of ``table`` under a savepoint, and where the destination refuses them,
    each half apart, down to the single rows refused (added to ``refused``)."""
    if not rows:
        return
    try:
        with sink.savepoint():
            if by_id:
                sink.delete_ids(table, sorted(int(row[0]) for row in rows))
            sink.insert(table, rows)
    except Exception as error:
        if not is_refusal(error):
            raise
        if len(rows) == 1:
            refused.append(RefusedRow.of(table, rows[0], error))
            return
        half = len(rows) // 2
        _write_apart(sink, table, rows[:half], by_id, refused)
        _write_apart(sink, table, rows[half:], by_id, refused)


def _write_whole(changes: Changes, sink: RowSink) -> None:
    tables = changes.tables()
    for name in ("batteries", "channels", "tests", "events"):
        for ids in in_chunks(int(row[0]) for row in tables[name]):
            sink.delete_ids(name, ids)
        if tables[name]:
            sink.insert(name, tables[name])
    for name, key, ranges in _RANGED:
        if getattr(changes, ranges):
            sink.delete_ranges(name, key, [(test_id, first, last) for test_id, (first, last)
                                           in sorted(getattr(changes, ranges).items())])
        if tables[name]:
            sink.insert(name, tables[name])


def report(changes: Changes, now_unix_s: float | None = None,
           refused: Sequence[RefusedRow] = ()) -> SyncReport:
    """The report of a sync that wrote ``changes`` (without the ``refused`` rows)."""
    age = 0.0
    if changes.oldest_unix_s is not None:
        now = time.time() if now_unix_s is None else now_unix_s
        age = max(0.0, now - changes.oldest_unix_s)
    refused_samples = sum(row.table == "samples" for row in refused)
    return SyncReport(rows=len(changes) - len(refused),
                      samples=len(changes.samples) - refused_samples,
                      caught_up=changes.complete, backlog_age_s=age, refused=tuple(refused))


def run_sync(
    target: SyncTarget,
    local: Database,
    *,
    name: str,
    interval_s: float = 0.5,
    alarm_after_s: float = 300.0,
    max_backoff_s: float = 60.0,
    once: bool = False,
    stop: threading.Event | None = None,
    on_report: Callable[[SyncReport], None] | None = None,
    on_alarm: Callable[[str], None] | None = None,
) -> None:
    """Run ``target`` (called ``name`` in messages) until ``stop`` is set, or with ``once``
    until it has caught up.

    A batch that leaves a backlog is followed at once by the next; once caught up the target
    waits ``interval_s``. An error closes the target and retries after a back-off that doubles
    up to ``max_backoff_s`` (with ``once`` the error is raised). When the target has not been
    caught up for ``alarm_after_s``, an ``alarm`` event is recorded in ``local`` (and passed to
    ``on_alarm``); a ``sync_recovered`` event follows when it has caught up again.

    Each row the target refused (:attr:`SyncReport.refused`) is recorded once per target as a
    ``sync_refused`` event in ``local`` (:func:`refused_rows` lists them) and passed to
    ``on_alarm``; a row refused again (after a restart, or changed) is not recorded twice.
    """
    for what, value in (("interval_s", interval_s), ("alarm_after_s", alarm_after_s),
                        ("max_backoff_s", max_backoff_s)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    stop = stop or threading.Event()
    refusals = _Refusals(local, name, on_alarm)
    caught_up_at = time.monotonic()
    backoff = interval_s
    is_open = alarmed = False
    while not stop.is_set():
        try:
            if not is_open:
                target.open()
                is_open = True
            result = target.sync_once(local)
        except Exception as exc:
            if is_open:
                _close_quietly(target, name)
                is_open = False
            if once:
                raise
            logger.warning("sync target %s failed (retrying in %.1f s): %s", name, backoff, exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff_s)
        else:
            backoff = interval_s
            refusals.add(result.refused)
            if on_report is not None:
                on_report(result)
            if result.caught_up:
                caught_up_at = time.monotonic()
                if alarmed:
                    _event(local, "sync_recovered", f"sync target {name} has caught up again",
                           name, 0.0)
                    alarmed = False
                if once:
                    break
                stop.wait(interval_s)
        behind_s = time.monotonic() - caught_up_at
        if not alarmed and behind_s > alarm_after_s:
            message = (f"sync target {name} has not caught up for {behind_s:.0f} s "
                       f"(alarm after {alarm_after_s:g} s)")
            alarmed = _event(local, "alarm", message, name, behind_s)
            if on_alarm is not None:
                on_alarm(message)
    if is_open:
        target.close()


@dataclass(frozen=True, slots=True)
class RefusalRecord:
    """A row a sync target refused, as recorded in the station database."""

    target: str
    row: RefusedRow
    unix_time_s: float


def refused_rows(local: Database, target: str | None = None) -> list[RefusalRecord]:
    """The rows sync targets refused (only ``target``'s, if given), oldest first: the
    ``sync_refused`` events of ``local``."""
    table = schema.events
    query = (sa.select(table.c.unix_time_s, table.c.data)
             .where(table.c.kind == REFUSED_EVENT).order_by(table.c.id))
    records = []
    with local.engine.connect() as connection:
        for unix_time_s, text in connection.execute(query):
            data = json.loads(text)
            if target is None or data.get("sync_target") == target:
                row = RefusedRow(data["table"], data["key"], data.get("test_id"), data["reason"])
                records.append(RefusalRecord(data["sync_target"], row, float(unix_time_s)))
    return records


#: The kind of the event that records a row a sync target refused.
REFUSED_EVENT = "sync_refused"


class _Refusals:
    """The rows one target refused: each recorded once in the station database and raised as
    an alarm; kept to record again while the database does not take the event."""

    def __init__(self, local: Database, name: str,
                 on_alarm: Callable[[str], None] | None) -> None:
        self._local, self._name, self._on_alarm = local, name, on_alarm
        self._pending: list[RefusedRow] = []
        try:
            known = refused_rows(local, name)
        except Exception as exc:  # the local database is busy: a repeat is recorded again
            logger.error("could not read the rows sync target %s refused: %s", name, exc)
            known = []
        self._known = {(r.row.table, r.row.key) for r in known}
        if known:
            logger.warning("sync target %s has refused %d rows (cellbench sync-refused lists "
                           "them)", name, len(known))

    def add(self, refused: Iterable[RefusedRow]) -> None:
        """Record ``refused`` (and what could not be recorded before)."""
        self._pending.extend(r for r in refused if (r.table, r.key) not in self._known
                             and r not in self._pending)
        while self._pending:
            row = self._pending[0]
            message = (f"sync target {self._name} refused {row.table} row {row.key} and goes "
                       f"on without it: {row.reason}")
            logger.error("%s", message)
            try:
                self._local.add_event(
                    kind=REFUSED_EVENT, message=message, test_id=row.test_id,
                    unix_time_s=time.time(),
                    data={"sync_target": self._name, "table": row.table, "key": row.key,
                          "test_id": row.test_id, "reason": row.reason})
            except Exception as exc:  # the local database is busy: try again next batch
                logger.error("could not record the refused row: %s", exc)
                return
            self._pending.pop(0)
            self._known.add((row.table, row.key))
            if self._on_alarm is not None:
                self._on_alarm(message)


def _event(local: Database, kind: str, message: str, target: str, behind_s: float) -> bool:
    """Record a sync event in the local database; False if that failed."""
    logger.warning("%s", message)
    try:
        local.add_event(kind=kind, message=message, unix_time_s=time.time(),
                        data={"sync_target": target, "behind_s": round(behind_s, 3)})
    except Exception as exc:  # the local database is busy or gone: try again next round
        logger.error("could not record the %s event: %s", kind, exc)
        return False
    return True


def _close_quietly(target: SyncTarget, name: str) -> None:
    try:
        target.close()
    except Exception as exc:  # closing a broken connection may fail too; it is dropped anyway
        logger.debug("closing sync target %s failed: %s", name, exc)

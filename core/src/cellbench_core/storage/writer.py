"""The batching writer thread: the only thing that writes samples and step summaries."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import astuple
from functools import partial
from typing import Any, TypeVar, cast

import numpy as np
import sqlalchemy as sa

from cellbench_core.storage import schema
from cellbench_core.storage.database import Database
from cellbench_core.storage.pgcopy import copy_rows, copy_statement, copy_types
from cellbench_core.storage.records import (
    PositionRow,
    SampleRows,
    StepRow,
    StorageError,
    StorageFailure,
    driver_message,
    is_storage_fault,
)

T = TypeVar("T")

#: Rows converted to Python tuples at a time; bounds the writer's extra memory.
_CHUNK_ROWS = 50_000
#: Sample rows encoded per write of a COPY (about 1.4 MB).
_COPY_ROWS = 10_000
#: A transaction takes queued submissions until it holds this many sample rows (about a quarter
#: of a second of work on SQLite, so that sample-to-commit stays well under a second).
_COMMIT_ROWS = 100_000
#: The writer commits once the oldest queued row is this old, or at once when this many rows
#: wait (or on flush and close). Waking for every submission instead would commit tiny
#: transactions and hand the GIL back and forth with the producer on every tick.
_COMMIT_AFTER_S = 0.2
_COMMIT_AFTER_ROWS = 20_000
#: Sample rows per INSERT statement on SQLite (14 parameters each, well under SQLite's limit).
_SQLITE_ROWS = 64
#: Positions per DELETE and INSERT statement (5 parameters each: under every driver's limit).
_POSITION_ROWS = 100
#: How many commit latencies :meth:`SampleWriter.commit_latency_s` remembers.
_LATENCY_HISTORY = 100_000
#: The pause between tries of a write the database did not accept: first, and at most.
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0

#: A database call to make on the writer thread once everything submitted before it is committed.
DeferredCall = Callable[[], object]

_Item = SampleRows | StepRow | PositionRow | DeferredCall


class SampleWriter:
    """Writes samples and step summaries on its own thread, many submissions per transaction.

    Submitted rows are committed in submission order; :meth:`committed` reports, per test, the
    highest ``seq`` that is committed, and only a committed sample counts as acknowledged.
    ``max_pending_rows`` bounds how many submitted rows may wait uncommitted: :meth:`submit`
    blocks beyond it. ``on_commit`` is called on the writer thread after each commit with the
    committed positions (test id -> highest seq) of the tests that commit wrote samples of.
    An error on the writer thread stops it and is raised (as StorageError) by the next
    :meth:`submit`, :meth:`submit_step`, :meth:`flush` or :meth:`close`.

    A storage fault (:func:`~cellbench_core.storage.records.is_storage_fault`: a full disk, a
    write lock another program holds, a server gone) does not stop it at once: the same
    transaction is tried again, on a new connection, for up to ``retry_s`` seconds from the
    first failure, while :attr:`trouble` says why. A fault that lasts longer stops it with a
    :class:`~cellbench_core.storage.records.StorageFailure`.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_pending_rows: int = 2_000_000,
        on_commit: Callable[[dict[int, int]], None] | None = None,
        retry_s: float = 60.0,
    ) -> None:
        if max_pending_rows < 1:
            raise ValueError(f"max_pending_rows must be at least 1, not {max_pending_rows}")
        if not (math.isfinite(retry_s) and retry_s >= 0):
            raise ValueError(f"retry_s must be a number of seconds >= 0, not {retry_s!r}")
        self._db = db
        self._retry_s = retry_s
        self._trouble: str | None = None
        self._max_pending_rows = max_pending_rows
        self._on_commit = on_commit
        self._changed = threading.Condition()
        self._queue: list[tuple[float, _Item]] = []  # (monotonic submit time, item)
        self._pending_rows = 0  # submitted and not yet committed
        self._submitted = 0  # items ever submitted
        self._done = 0  # items ever committed
        self._flushing = 0  # threads waiting in flush()
        self._closing = False
        self._error: BaseException | None = None
        self._committed: dict[int, int] = {}
        self._latencies: deque[float] = deque(maxlen=_LATENCY_HISTORY)
        # A daemon thread: a program that exits without close() loses only uncommitted rows,
        # which were never acknowledged.
        self._thread = threading.Thread(
            target=self._run, name="cellbench-sample-writer", daemon=True
        )
        self._thread.start()

    # --- called by producers -------------------------------------------------------------------

    def submit(self, rows: SampleRows) -> None:
        """Queue a batch of samples; blocks while ``max_pending_rows`` rows wait uncommitted."""
        count = len(rows)
        with self._changed:
            self._check()
            while self._pending_rows and self._pending_rows + count > self._max_pending_rows:
                self._changed.wait()
                self._check()
            self._enqueue(rows, count)

    def submit_step(self, step: StepRow) -> None:
        """Queue a finished step's summary; it commits with or after the samples before it."""
        with self._changed:
            self._check()
            self._enqueue(step, 0)

    def submit_positions(self, positions: Sequence[PositionRow]) -> None:
        """Queue tests' plan positions; each commits in the same transaction as the samples
        submitted around it, and replaces its test's previous one."""
        with self._changed:
            self._check()
            for position in positions:
                self._enqueue(position, 0)

    def submit_call(self, call: DeferredCall) -> None:
        """Queue a database call (a test's end, an event) to run on the writer thread after
        everything submitted before it is committed, so that the caller never waits for the
        database and the call's effect never precedes the samples it concerns."""
        with self._changed:
            self._check()
            self._enqueue(call, 0)

    def _enqueue(self, item: _Item, rows: int) -> None:
        self._queue.append((time.monotonic(), item))
        self._pending_rows += rows
        self._submitted += 1
        if len(self._queue) == 1 or self._pending_rows >= _COMMIT_AFTER_ROWS:
            self._changed.notify_all()  # start the commit timer, or commit now

    def committed(self) -> dict[int, int]:
        """Per test id, the highest committed ``seq``."""
        with self._changed:
            return dict(self._committed)

    @property
    def retry_s(self) -> float:
        """How long a write the database does not accept is tried again (seconds)."""
        return self._retry_s

    @property
    def trouble(self) -> str | None:
        """Why the database does not accept the writer's writes just now (it retries them), or
        None while it does."""
        with self._changed:
            return self._trouble

    def commit_latency_s(self) -> list[float]:
        """For each recent commit of samples (up to 100,000), seconds from the submission of its
        oldest sample row to the end of the commit."""
        with self._changed:
            return list(self._latencies)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is committed; TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            target = self._submitted
            self._flushing += 1
            self._changed.notify_all()
            try:
                self._wait_done(target, deadline, timeout)
            finally:
                self._flushing -= 1
            self._raise_error()

    def _wait_done(self, target: int, deadline: float | None, timeout: float | None) -> None:
        """Wait (holding the condition) until ``target`` items are committed."""
        while self._done < target:
            self._raise_error()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"{self._pending_rows} sample rows still uncommitted after {timeout} s"
                )
            self._changed.wait(remaining)

    def close(self) -> None:
        """Commit everything submitted, then stop the thread. Safe to call again."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        with self._changed:
            self._raise_error()

    def _check(self) -> None:
        self._raise_error()
        if self._closing:
            raise StorageError("the sample writer is closed")

    def _raise_error(self) -> None:
        if isinstance(self._error, StorageFailure):
            raise StorageFailure(str(self._error)) from self._error
        if self._error is not None:
            raise StorageError(f"the sample writer failed: {self._error!r}") from self._error

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        link = _Link(self._db)
        try:
            while True:
                with self._changed:
                    while not self._due():
                        self._changed.wait(self._wait_time())
                    if not self._queue:
                        return
                    items = self._take()
                positions: dict[int, int] = {}
                rows = 0
                # Samples and steps commit together; a run of deferred calls (a test's end,
                # events: thousands at once when a station stops) shares one transaction.
                for writing, group in itertools.groupby((i for _, i in items), _is_write):
                    part = list(group)
                    if writing:
                        writes = cast(list[SampleRows | StepRow | PositionRow], part)
                        done, count = self._retrying(link, partial(link.commit, writes))
                        positions.update(done)
                        rows += count
                        continue
                    self._retrying(link, partial(self._call, cast(list[DeferredCall], part)))
                # Sample-to-commit: from the oldest sample row (positions, steps and calls that
                # came before it, e.g. while thousands of tests start, are not samples).
                first = next((t for t, i in items if isinstance(i, SampleRows)), None)
                latency = None if first is None else time.monotonic() - first
                with self._changed:
                    # A test's samples are submitted, and so committed, in seq order.
                    self._committed.update(positions)
                    self._pending_rows -= rows
                    self._done += len(items)
                    if latency is not None:
                        self._latencies.append(latency)
                    self._changed.notify_all()
                if self._on_commit is not None and positions:
                    self._on_commit(positions)
        except BaseException as exc:
            self._fail(exc)
        finally:
            link.drop()

    def _call(self, calls: list[DeferredCall]) -> None:
        with self._db.batch():
            for call in calls:
                call()

    def _retrying(self, link: _Link, write: Callable[[], T]) -> T:
        """``write()`` (one transaction), tried again on a new connection while it fails with
        a storage fault, for up to ``retry_s`` from the first failure; then StorageFailure."""
        failed_at: float | None = None
        pause = _RETRY_FIRST_S
        while True:
            try:
                result = write()
            except Exception as exc:
                link.drop()  # rolled back: the transaction is tried again whole
                if not is_storage_fault(exc):
                    raise
                reason = driver_message(exc)
                now = time.monotonic()
                failed_at = now if failed_at is None else failed_at
                if now - failed_at >= self._retry_s:
                    raise StorageFailure(
                        f"the database has not accepted writes for {now - failed_at:.0f} s "
                        f"({reason})") from exc
                with self._changed:
                    self._trouble = reason
                time.sleep(min(pause, self._retry_s - (now - failed_at)))
                pause = min(pause * 2, _RETRY_MAX_S)
                continue
            if failed_at is not None:
                with self._changed:
                    self._trouble = None
            return result

    def _due(self) -> bool:
        """Whether the writer should commit now (or, with an empty queue, stop)."""
        if not self._queue:
            return self._closing
        return (self._closing or self._flushing > 0 or self._pending_rows >= _COMMIT_AFTER_ROWS
                or time.monotonic() - self._queue[0][0] >= _COMMIT_AFTER_S)

    def _wait_time(self) -> float | None:
        if not self._queue:
            return None
        return max(0.0, _COMMIT_AFTER_S - (time.monotonic() - self._queue[0][0]))

    def _take(self) -> list[tuple[float, _Item]]:
        rows = taken = 0
        while taken < len(self._queue) and rows < _COMMIT_ROWS:
            item = self._queue[taken][1]
            rows += len(item) if isinstance(item, SampleRows) else 0
            taken += 1
        items, self._queue = self._queue[:taken], self._queue[taken:]
        return items

    def _fail(self, exc: BaseException) -> None:
        with self._changed:
            self._error = exc
            self._changed.notify_all()


class _Link:
    """The writer thread's own DBAPI connection, opened when first needed and dropped (rolled
    back and closed) after a failure, so that the next try starts on a new one."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: Any = None
        self._inserter: _Inserter | None = None

    def commit(self, items: Sequence[_Item]) -> tuple[dict[int, int], int]:
        """Write and commit ``items`` (see :meth:`_Inserter.commit`), on a connection opened
        now if there is none."""
        if self._inserter is None:
            self._connection = self._db.engine.raw_connection()
            self._inserter = _Inserter(self._db.engine.dialect, self._connection)
        return self._inserter.commit(items)

    def drop(self) -> None:
        """Roll back and close the connection, if open (a broken one may fail to: ignored)."""
        connection, self._connection, self._inserter = self._connection, None, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            connection.rollback()
        with contextlib.suppress(Exception):
            connection.close()


class _Inserter:
    """Turns queued items into one transaction on a DBAPI connection."""

    def __init__(self, dialect: sa.Dialect, connection: Any) -> None:
        self._connection = connection
        self._copy = dialect.name == "postgresql" and dialect.driver == "psycopg"
        make = copy_statement if self._copy else _insert_statement
        self._statements = {
            table.name: make(dialect, table)
            for table in (schema.samples, schema.sample_aux, schema.steps)
        }
        # sqlite3 releases the GIL for every statement it steps; while the runner keeps the
        # other thread busy, taking it back can cost up to the switch interval (5 ms) each time.
        # Many rows per statement make that once per _SQLITE_ROWS rows instead of once per row.
        # (pymysql already rewrites executemany into multi-row statements; COPY streams.)
        self._dialect = dialect
        self._multi_row = (
            _insert_statement(dialect, schema.samples, _SQLITE_ROWS)
            if dialect.name == "sqlite"
            else None
        )

    def commit(self, items: Sequence[_Item]) -> tuple[dict[int, int], int]:
        """Write and commit the items; return the new positions and the number of sample rows."""
        batches = [item for item in items if isinstance(item, SampleRows)]
        steps = [_step_values(item) for item in items if isinstance(item, StepRow)]
        # The newest position of each test replaces the stored one.
        latest = {item.test_id: item for item in items if isinstance(item, PositionRow)}
        cursor = self._connection.cursor()
        try:
            # One transaction holds everything, so the order of the inserts does not matter to
            # readers: a step is never visible without the samples submitted before it.
            rows, positions = self._samples(cursor, batches) if batches else (0, {})
            aux = sorted(row for batch in batches for row in _aux_rows(batch))
            if aux:
                self._write(cursor, schema.sample_aux, aux)
            if steps:
                self._write(cursor, schema.steps, steps)
            if latest:
                self._positions(cursor, list(latest.values()))
        finally:
            cursor.close()
        self._connection.commit()
        return positions, rows

    def _samples(self, cursor: Any, batches: list[SampleRows]) -> tuple[int, dict[int, int]]:
        columns = [
            np.concatenate([getattr(batch, name) for batch in batches])
            for name in schema.SAMPLE_COLUMNS
        ]
        # Inserting in primary-key order keeps each B-tree insert next to the previous one;
        # with many interleaved tests this is markedly faster than arrival order.
        order = np.lexsort((columns[1], columns[0]))
        columns = [column[order] for column in columns]
        if self._copy:
            self._copy_samples(cursor, columns)
        else:
            self._insert_samples(cursor, columns)
        # Sorted by test and seq: each test's highest seq is the last of its run of rows.
        test_id = columns[0]
        if not len(test_id):
            return 0, {}
        last = np.flatnonzero(np.r_[test_id[1:] != test_id[:-1], True])
        return len(test_id), dict(zip(test_id[last].tolist(), columns[1][last].tolist(),
                                      strict=True))

    def _insert_samples(self, cursor: Any, columns: list[np.ndarray]) -> None:
        """INSERT sample rows (SQLite, MariaDB/MySQL), as Python values a chunk at a time."""
        for start in range(0, len(columns[0]), _CHUNK_ROWS):
            chunk = [_python_values(c[start : start + _CHUNK_ROWS]) for c in columns]
            rows = zip(*chunk, strict=True)
            if self._multi_row is not None:
                whole = len(chunk[0]) // _SQLITE_ROWS * _SQLITE_ROWS
                if whole:
                    flat = list(itertools.chain.from_iterable(itertools.islice(rows, whole)))
                    size = _SQLITE_ROWS * len(columns)
                    params = [flat[i : i + size] for i in range(0, len(flat), size)]
                    cursor.executemany(self._multi_row, params)
            self._write(cursor, schema.samples, rows)  # the rest, one row per statement

    def _copy_samples(self, cursor: Any, columns: list[np.ndarray]) -> None:
        """COPY sample rows to PostgreSQL, encoding the binary format with numpy: a row of
        Python objects per sample (what ``write_row`` takes) costs more than the database's
        work, and holds the GIL the runner needs. One COPY takes the whole batch, a chunk at a
        time, so the server stores one chunk while the next is encoded. Rows with a missing
        value (NULL) are rare and go through ``write_row``."""
        table = schema.samples
        types = copy_types(table)
        complete = np.ones(len(columns[0]), dtype=bool)
        for column in columns:
            if column.dtype.kind == "f":
                complete &= np.isfinite(column)
        whole = [c[complete] for c in columns]
        with cursor.copy(self._statements[table.name]) as copy:
            copy.set_types(types)
            copy.write(_COPY_SIGNATURE)
            for start in range(0, len(whole[0]), _COPY_ROWS):
                copy.write(_binary_rows([c[start:start + _COPY_ROWS] for c in whole], types))
            missing = np.flatnonzero(~complete)
            if not len(missing):
                copy.write(_COPY_TRAILER)  # write_row adds it itself
            for row in zip(*(_python_values(c[missing]) for c in columns), strict=True):
                copy.write_row(row)

    def _positions(self, cursor: Any, positions: list[PositionRow]) -> None:
        """Replace the positions of their tests: many rows per statement, since a station
        starting thousands of tests writes thousands at once while its runner keeps the GIL
        busy (see _multi_row)."""
        table = schema.test_positions
        if self._copy:  # PostgreSQL: every position in one statement, as arrays
            cursor.execute(_POSTGRES_UPSERT_POSITIONS, [
                [p.test_id for p in positions], [p.step_no for p in positions],
                [p.start_seq for p in positions], [p.unix_time_s for p in positions],
                [json.dumps(p.state, allow_nan=False) for p in positions]])
            return
        for start in range(0, len(positions), _POSITION_ROWS):
            chunk = positions[start:start + _POSITION_ROWS]
            cursor.execute(_delete_statement(self._dialect, table, "test_id", len(chunk)),
                           [p.test_id for p in chunk])
            cursor.execute(_insert_statement(self._dialect, table, len(chunk)), [
                value for p in chunk for value in (
                    p.test_id, p.step_no, p.start_seq, p.unix_time_s,
                    json.dumps(p.state, allow_nan=False))])

    def _write(self, cursor: Any, table: sa.Table, rows: Iterable[tuple[Any, ...]]) -> None:
        if self._copy:
            copy_rows(cursor, self._dialect, table, rows)
        else:
            cursor.executemany(self._statements[table.name], rows)


def _is_write(item: _Item) -> bool:
    return isinstance(item, SampleRows | StepRow | PositionRow)


def _python_values(column: np.ndarray) -> list[Any]:
    """The column as Python numbers (what every DBAPI driver accepts), non-finite as None."""
    if column.dtype.kind == "f":
        bad = ~np.isfinite(column)
        if bad.any():
            column = column.astype(object)
            column[bad] = None
    values: list[Any] = column.tolist()
    return values


def _step_values(step: StepRow) -> tuple[Any, ...]:
    """The step's fields as plain Python values, non-finite numbers as None."""
    values: list[Any] = []
    for value in astuple(step):
        if isinstance(value, float | np.floating):
            values.append(float(value) if math.isfinite(value) else None)
        elif isinstance(value, int | np.integer):
            values.append(int(value))
        else:
            values.append(str(value))
    return tuple(values)


def _aux_rows(batch: SampleRows) -> Iterator[tuple[int, int, str, float]]:
    for name, column in batch.aux.items():
        stored = np.isfinite(column)
        yield from zip(
            batch.test_id[stored].tolist(),
            batch.seq[stored].tolist(),
            itertools.repeat(name),
            column[stored].tolist(),
            strict=False,  # repeat() is endless
        )


def _placeholder(dialect: sa.Dialect) -> str:
    placeholder = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if placeholder is None:
        raise StorageError(
            f"the {dialect.name}+{dialect.driver} driver's paramstyle {dialect.paramstyle!r} is"
            " not supported; use sqlite, mysql+pymysql or postgresql+psycopg"
        )
    return placeholder


def _delete_statement(dialect: sa.Dialect, table: sa.Table, key: str, rows: int) -> str:
    quote = dialect.identifier_preparer.quote
    marks = ", ".join([_placeholder(dialect)] * rows)
    return f"DELETE FROM {quote(table.name)} WHERE {quote(key)} IN ({marks})"


def _insert_statement(dialect: sa.Dialect, table: sa.Table, rows: int = 1) -> str:
    placeholder = _placeholder(dialect)
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in table.columns)
    values = ", ".join(placeholder for _ in table.columns)
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES " + ", ".join([f"({values})"] * rows)


#: Replaces the positions of their tests on PostgreSQL (see _Inserter._positions).
_POSTGRES_UPSERT_POSITIONS = (
    "INSERT INTO test_positions (test_id, step_no, start_seq, unix_time_s, state) "
    "SELECT * FROM unnest(%s::int4[], %s::int4[], %s::int8[], %s::float8[], %s::text[]) "
    "ON CONFLICT (test_id) DO UPDATE SET step_no = EXCLUDED.step_no, "
    "start_seq = EXCLUDED.start_seq, unix_time_s = EXCLUDED.unix_time_s, state = EXCLUDED.state")

#: The header and the end of PostgreSQL's binary COPY format.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_COPY_TRAILER = b"\xff\xff"
#: The big-endian numpy type of each PostgreSQL type the sample table uses.
_PG_NUMPY = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}


def _binary_rows(columns: list[np.ndarray], types: list[str]) -> bytes:
    """Rows of binary COPY data (no header) for columns without missing values: per row the
    field count, then each field's length and big-endian value."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k, kind in enumerate(types):
        fields += [(f"length{k}", ">i4"), (f"value{k}", _PG_NUMPY[kind])]
    rows = np.empty(len(columns[0]) if columns else 0, dtype=np.dtype(fields))
    rows["count"] = len(types)
    for k, (kind, column) in enumerate(zip(types, columns, strict=True)):
        rows[f"length{k}"] = np.dtype(_PG_NUMPY[kind]).itemsize
        rows[f"value{k}"] = column
    return rows.tobytes()

"""Opening, migrating and querying a cellbench database (everything except writing samples)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cellbench_core.events import TestStatus
from cellbench_core.storage import schema
from cellbench_core.storage.inserts import (
    insert_one,
    insert_started_events,
    insert_with_ids,
)
from cellbench_core.storage.lookups import chunks, ids_by_name
from cellbench_core.storage.reading import sample_arrays
from cellbench_core.storage.records import (
    BatteryRecord,
    CycleRecord,
    EventRecord,
    PositionRecord,
    StartWithdrawn,
    StepRecord,
    StorageError,
    TestEnd,
    TestRecord,
    TestStart,
)
from cellbench_core.storage.urls import DatabaseOpenError, checked_url, shown, unavailable
from cellbench_core.text import check_identifier, check_name, printable
from cellbench_core.units import Dimension, UnitError, check_physical

#: The quantity of each of a battery's figures, for their physical ranges.
_BATTERY_DIMENSIONS = {
    "nominal_capacity_ah": Dimension.CHARGE, "nominal_voltage_v": Dimension.VOLTAGE,
    "voltage_max_v": Dimension.VOLTAGE, "voltage_min_v": Dimension.VOLTAGE,
    "current_max_charge_a": Dimension.CURRENT, "current_max_discharge_a": Dimension.CURRENT,
    "temperature_max_c": Dimension.TEMPERATURE}

_MIGRATIONS = "cellbench_core.storage:migrations"
_SQLITE_CACHE_KIB = 65536
_SQLITE_BUSY_TIMEOUT_S = 30.0
#: What :meth:`Database.probe_writes` writes: about what a few seconds of samples of a large
#: station take, so that a disk with no room left fails it (random bytes: no server compresses
#: them away).
_PROBE_BYTES = 1 << 20


#: psycopg prepares a statement on the server once it has run five times, and PostgreSQL then
#: plans it once for any parameters: a ``name IN (10,000 parameters)`` lookup so planned
#: compares each row with the whole list (no hashing), 25 s for 200,000 channels where a plan
#: made for the actual values takes 30 ms. Statements stay prepared; only their plans are made
#: per execution.
_POSTGRES_CONNECT_ARGS = {"options": "-c plan_cache_mode=force_custom_plan"}


def open_database(url: str, *, create: bool = True,
                  busy_timeout_s: float = _SQLITE_BUSY_TIMEOUT_S) -> Database:
    """Open the database at a SQLAlchemy URL and upgrade its schema to the newest version.

    ``sqlite:///path/to/file.sqlite3`` (with ``create``, the file and its parent directory are
    created), ``mysql+pymysql://user:password@host/db`` or ``postgresql+psycopg://user@host/db``.
    Without ``create`` (for reading) a missing SQLite file, or a database without the cellbench
    schema, is refused. A URL that cannot be opened raises :class:`DatabaseOpenError` saying why
    and how to fix it. On SQLite a write waits up to ``busy_timeout_s`` for another program's
    write lock.
    """
    parsed = checked_url(url)
    if not create and parsed.get_backend_name() == "sqlite" \
            and not Path(parsed.database or "").is_file():
        raise DatabaseOpenError(
            f"{shown(parsed)}: there is no database file {parsed.database}; check the name, or "
            f"create it with cellbench db upgrade --db {shown(parsed)}")
    engine = _create_engine(parsed, busy_timeout_s)
    try:
        with _translated(parsed):
            if not create and not sa.inspect(engine).has_table(schema.VERSION_TABLE):
                raise DatabaseOpenError(
                    f"{shown(parsed)} has no cellbench tables (not a cellbench database?); "
                    f"create them with cellbench db upgrade --db {shown(parsed)}")
            _upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return Database(url, engine)


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Create or upgrade the schema of the database at ``url`` to the newest version; return
    the schema revisions before (None: no cellbench schema) and after."""
    parsed = checked_url(url)
    engine = _create_engine(parsed)
    try:
        with _translated(parsed):
            before = _revision(engine)
            _upgrade(engine)
            return before, _revision(engine)
    finally:
        engine.dispose()


@contextmanager
def _translated(parsed: sa.URL) -> Iterator[None]:
    """Connection failures inside the block as :class:`DatabaseOpenError`."""
    try:
        yield
    except (sa.exc.DatabaseError, sa.exc.InterfaceError) as err:
        raise unavailable(parsed, err) from err


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _current(connection)


def _current(connection: Connection) -> str | None:
    """The station schema revision of the database ``connection`` is on."""
    from alembic.runtime.migration import MigrationContext  # lazily: see _upgrade

    context = MigrationContext.configure(connection,
                                         opts={"version_table": schema.VERSION_TABLE})
    return context.get_current_revision()


def _create_engine(parsed: sa.URL, busy_timeout_s: float = _SQLITE_BUSY_TIMEOUT_S) -> Engine:
    backend = parsed.get_backend_name()
    if backend != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=(
            _POSTGRES_CONNECT_ARGS if backend == "postgresql" else {}))
    Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed)
    busy_timeout_ms = round(busy_timeout_s * 1000)
    sa.event.listen(engine, "connect",
                    lambda connection, _: _sqlite_pragmas(connection, busy_timeout_ms))
    return engine


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
    # WAL lets readers (plots, sync) run beside the writer; NORMAL syncs only at checkpoints,
    # which keeps the database consistent after a power loss and loses at most the last commits.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _upgrade(engine: Engine) -> None:
    # Imported here: Alembic takes a third of a second to import, which every `cellbench`
    # command would pay at start.
    from alembic import command
    from alembic.config import Config

    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by copying it into a new one and dropping the old, which
            # enforced foreign keys refuse while other rows refer to it; they are checked once
            # at the end instead (SQLite's own recipe). Outside the transaction: the pragma
            # does nothing inside one.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                _refuse_foreign_tables(connection)
                before = _current(connection)
                config = Config()
                config.set_main_option("script_location", _MIGRATIONS)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                # Only after a migration ran: no table scan at every station start.
                if sqlite and _current(connection) != before and connection.exec_driver_sql(
                        "PRAGMA foreign_key_check").first():
                    raise StorageError("the upgrade would leave rows that refer to missing "
                                       "ones; nothing was changed")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _refuse_foreign_tables(connection: Connection) -> None:
    """Refuse a database without the station schema that already holds tables of the station
    schema's names (a central database of the ``central-sql`` sync target, or another
    program's): migrating would fail half-way, leaving cellbench's version table behind."""
    inspector = sa.inspect(connection)
    if inspector.has_table(schema.VERSION_TABLE):
        return
    clashing = sorted(set(inspector.get_table_names()) & set(schema.metadata.tables))
    if clashing:
        shown_url = shown(connection.engine.url)
        raise DatabaseOpenError(
            f"{shown_url} is not a station database: it holds tables named "
            f"{', '.join(clashing)} but no cellbench station schema. A central database of the "
            f"central-sql sync target is upgraded with: cellbench central upgrade --url "
            f"{shown_url}")


def _float(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _optional_float(name: str, value: float | None) -> float | None:
    return None if value is None else _float(name, value)


def _json(what: str, value: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(value or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} cannot be stored as JSON: {exc}") from exc


def _check_distinct(check: Callable[[object, str], str], values: list[Any], what: str) -> None:
    """``check(value, what)`` once per distinct value, in order (tests starting together
    mostly share their names)."""
    try:
        distinct: Iterable[Any] = dict.fromkeys(values)
    except TypeError:  # an unhashable value, which the check refuses in its turn
        distinct = values
    for value in distinct:
        check(value, what)


_CYCLE_FLOATS = frozenset(f.name for f in fields(CycleRecord) if f.type == "float")


def _cycle(row: sa.RowMapping) -> CycleRecord:
    values: dict[str, Any] = {str(name): value for name, value in row.items()}
    for name in _CYCLE_FLOATS:
        values[name] = _nan_if_null(values[name])
    values["end_reasons"] = values["end_reasons"] or ""
    return CycleRecord(**values)


def _nan_if_null(value: float | None) -> float:
    return math.nan if value is None else float(value)


class Database:
    """A cellbench database: batteries, channels, tests, their samples, steps and events.

    Safe to use from several threads. Samples and steps are written by a
    :class:`~cellbench_core.storage.SampleWriter`; everything else is written here.
    ``url`` is the URL it was opened with (it may contain a password).
    """

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._local = threading.local()  # the open batch() transaction of each thread

    def close(self) -> None:
        """Close every connection of the engine."""
        self.engine.dispose()

    def probe_writes(self) -> None:
        """Commit a probe of about a megabyte in a table of its own, then remove it: raises
        what the database raises while it does not accept writes (a full disk, a write lock
        another program holds, a read-only file)."""
        size = _PROBE_BYTES
        wal = Path(f"{self.engine.url.database}-wal")
        if self.engine.dialect.name == "sqlite" and wal.is_file():
            # SQLite writes its log over from the start: a probe only as large as the log was
            # would fit in space the full disk gave it earlier.
            size += wal.stat().st_size
        probe = sa.Table("cellbench_write_probe", sa.MetaData(),
                         sa.Column("data", sa.LargeBinary(size), nullable=False))
        with self.engine.begin() as connection:
            probe.create(connection, checkfirst=True)
            connection.execute(probe.insert().values(data=os.urandom(size)))
        with self.engine.begin() as connection:
            probe.drop(connection)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write of this thread inside the block one transaction (all or nothing;
        starting a thousand tests is then one commit, not thousands)."""
        with self._transaction():
            yield

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        current: Connection | None = getattr(self._local, "connection", None)
        if current is not None:  # inside batch(): join its transaction
            yield current
            return
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # Take the write lock first: a SQLite read transaction that later writes fails at
                # once, without waiting, if the sample writer committed in between.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            self._local.connection = connection
            try:
                yield connection
                connection.commit()
            finally:
                self._local.connection = None

    # --- batteries -----------------------------------------------------------------------------

    def add_battery(
        self,
        name: str,
        chemistry: str,
        nominal_capacity_ah: float,
        nominal_voltage_v: float | None = None,
        voltage_max_v: float | None = None,
        voltage_min_v: float | None = None,
        current_max_charge_a: float | None = None,
        current_max_discharge_a: float | None = None,
        temperature_max_c: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_unix_s: float | None = None,
    ) -> int:
        """Store a battery definition and return its id; raise StorageError if the name is taken.

        Current limits are magnitudes in A; ``created_unix_s`` defaults to now.
        """
        row = _battery_row(
            name, chemistry=chemistry, nominal_capacity_ah=nominal_capacity_ah,
            nominal_voltage_v=nominal_voltage_v, voltage_max_v=voltage_max_v,
            voltage_min_v=voltage_min_v, current_max_charge_a=current_max_charge_a,
            current_max_discharge_a=current_max_discharge_a,
            temperature_max_c=temperature_max_c, metadata=metadata,
            created_unix_s=time.time() if created_unix_s is None else created_unix_s)
        try:
            with self._transaction() as connection:
                if self._battery_id(connection, name) is not None:
                    raise StorageError(f"a battery named {name!r} already exists")
                return insert_one(connection, schema.batteries, row)
        except sa.exc.IntegrityError as exc:  # another process added the same name meanwhile
            raise StorageError(f"a battery named {name!r} already exists") from exc

    def update_battery(self, name: str, changes: Mapping[str, Any]) -> BatteryRecord:
        """Change the stored values of battery ``name`` (``changes``: any of the keyword
        arguments of :meth:`add_battery` but ``created_unix_s``; None clears an optional
        value) and return it as stored. The battery as changed must pass the rules
        :meth:`add_battery` applies (ValueError, nothing changed); StorageError if there is
        no such battery."""
        unknown = sorted(set(changes) - set(_EDITABLE_BATTERY_FIELDS))
        if unknown:
            raise ValueError(f"no battery field {unknown[0]!r} (there are "
                             f"{', '.join(_EDITABLE_BATTERY_FIELDS)})")
        with self._transaction() as connection:
            found = connection.execute(sa.select(schema.batteries).where(
                schema.batteries.c.name == name)).mappings().first()
            if found is None:
                raise StorageError(f"no battery called {name!r}")
            current = _battery_record(found)
            values = {field: getattr(current, field) for field in _EDITABLE_BATTERY_FIELDS}
            row = _battery_row(name, **{**values, **changes},
                               created_unix_s=current.created_unix_s)
            connection.execute(schema.batteries.update()
                               .where(schema.batteries.c.id == current.id).values(row))
        updated = self.battery(name)
        assert updated is not None
        return updated

    @staticmethod
    def _battery_id(connection: Connection, name: str) -> int | None:
        query = sa.select(schema.batteries.c.id).where(schema.batteries.c.name == name)
        found = connection.execute(query).scalar()
        return None if found is None else int(found)

    def battery(self, name: str) -> BatteryRecord | None:
        """The battery with this name, or None."""
        query = sa.select(schema.batteries).where(schema.batteries.c.name == name)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else _battery_record(row)

    def batteries(self) -> list[BatteryRecord]:
        """All batteries, by name."""
        query = sa.select(schema.batteries).order_by(schema.batteries.c.name)
        with self.engine.connect() as connection:
            return [_battery_record(row) for row in connection.execute(query).mappings()]

    def delete_battery(self, name: str, *, keep_tests: bool = False) -> int:
        """Remove battery ``name``; return how many tests ran on it. A battery with tests is
        refused (StorageError) unless ``keep_tests``: the tests stay, without a battery."""
        batteries, tests = schema.batteries, schema.tests
        with self.engine.begin() as connection:
            battery_id = connection.execute(
                sa.select(batteries.c.id).where(batteries.c.name == name)).scalar()
            if battery_id is None:
                raise StorageError(f"no battery called {name!r}")
            used = connection.execute(sa.select(sa.func.count()).select_from(tests)
                                      .where(tests.c.battery_id == battery_id)).scalar_one()
            if used and not keep_tests:
                raise StorageError(f"battery {name!r} has {used} test(s); delete them first, "
                                   "or keep them without a battery")
            connection.execute(tests.update().where(tests.c.battery_id == battery_id)
                               .values(battery_id=None))
            connection.execute(batteries.delete().where(batteries.c.id == battery_id))
        return int(used)

    # --- channels and tests --------------------------------------------------------------------

    def ensure_channel(self, name: str, driver: str, settings: Mapping[str, Any]) -> int:
        """Return the id of the channel with this name, creating it or updating its driver and
        settings."""
        values = {
            "name": check_identifier(name, "channel name"),
            "driver": check_name(driver, "channel driver"),
            "settings": _json(f"settings of channel {name!r}", settings),
        }
        table = schema.channels
        with self._transaction() as connection:
            found = connection.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
            if found is None:
                return insert_one(connection, table, values)
            connection.execute(sa.update(table).where(table.c.id == found).values(values))
            return int(found)

    def start_tests(self, tests: Sequence[TestStart],
                    confirm: Callable[[], bool] | None = None) -> list[int]:
        """Record tests that start now (status ``running``), with their channels and one
        ``test_started`` event each, in a single transaction, so that a station starting
        thousands of channels commits once; return the new test ids in the order given.

        Channels are created as needed; a named battery must exist. ``confirm``, when given,
        is asked once the rows are written: the transaction commits if it answers True, and
        is rolled back with :class:`StartWithdrawn` otherwise (the runner writes the rows in
        a worker thread while it checks the tests itself, and answers when it knows).
        """
        if not tests:
            return []
        for check, what, values in (
                (check_name, "test name", [t.name for t in tests]),
                (check_name, "plan name", [t.plan_name for t in tests]),
                (check_identifier, "station name", [t.station for t in tests])):
            _check_distinct(check, values, what)
        rows: list[dict[str, Any]] = []
        for t in tests:
            period = _float("sample_period_s", t.sample_period_s)
            if period <= 0:
                raise ValueError(f"sample_period_s must be positive, not {t.sample_period_s!r}")
            rows.append({
                "name": t.name, "plan_name": t.plan_name,
                "plan_source": t.plan_source, "plan_text": t.plan_text,
                "status": TestStatus.RUNNING.value,
                "start_unix_s": _float("start_unix_s", t.start_unix_s),
                "sample_period_s": period, "station": t.station,
            })
        with self._transaction() as connection:
            drivers = {t.channel: t.driver for t in tests}
            ids = ids_by_name(connection, schema.channels, drivers.keys())
            missing = [{"name": name, "driver": drivers[name], "settings": "{}"}
                       for name in drivers if name not in ids]
            _check_distinct(check_identifier, [row["name"] for row in missing], "channel name")
            _check_distinct(check_name, [row["driver"] for row in missing], "channel driver")
            # The new channels' ids come with their insert: no second lookup.
            ids.update(zip([row["name"] for row in missing],
                           insert_with_ids(connection, schema.channels, missing), strict=True))
            battery_ids = ids_by_name(connection, schema.batteries,
                                       {t.battery for t in tests if t.battery is not None})
            for row, t in zip(rows, tests, strict=True):
                row["channel_id"] = ids[t.channel]
                row["battery_id"] = None  # every row needs the same keys for executemany
                if t.battery is not None:
                    if t.battery not in battery_ids:
                        raise StorageError(f"no battery named {t.battery!r}")
                    row["battery_id"] = battery_ids[t.battery]
            new_ids = insert_with_ids(connection, schema.tests, rows)
            insert_started_events(connection, new_ids)
            if confirm is not None and not confirm():
                raise StartWithdrawn("the tests were withdrawn before their start was recorded")
        return new_ids

    def finish_test(self, test_id: int, status: str, reason: str, end_unix_s: float) -> None:
        """Record how and when a test ended; ``status`` is any TestStatus except ``running``."""
        self.finish_tests([TestEnd(test_id, status, reason, end_unix_s)])

    def finish_tests(self, ends: Sequence[TestEnd]) -> None:
        """Record how and when tests ended, each with a ``test_finished`` event, in one
        transaction (a station stopping thousands of channels commits once)."""
        rows = []
        for end in ends:
            try:
                final = TestStatus(end.status)
            except ValueError:
                final = TestStatus.RUNNING
            if final is TestStatus.RUNNING:
                allowed = ", ".join(s.value for s in TestStatus if s is not TestStatus.RUNNING)
                raise ValueError(f"a test ends with status {allowed}; not {end.status!r}")
            rows.append({"tid": int(end.test_id), "status": final.value,
                         "end_reason": end.reason,
                         "end_unix_s": _float("end_unix_s", end.end_unix_s)})
        if not rows:
            return
        table = schema.tests
        update = sa.update(table).where(table.c.id == sa.bindparam("tid")).values(
            status=sa.bindparam("status"), end_reason=sa.bindparam("end_reason"),
            end_unix_s=sa.bindparam("end_unix_s"))
        with self._transaction() as connection:
            ids = [row["tid"] for row in rows]
            found = {int(i) for part in chunks(ids) for i in connection.execute(
                sa.select(table.c.id).where(table.c.id.in_(part))).scalars()}
            for test_id in ids:
                if test_id not in found:
                    raise StorageError(f"no test with id {test_id}")
            connection.execute(update, rows)
            channel_of = {test_id: name for part in chunks(ids) for test_id, name in
                          connection.execute(
                              sa.select(table.c.id, schema.channels.c.name)
                              .join(schema.channels, schema.channels.c.id == table.c.channel_id)
                              .where(table.c.id.in_(part)))}
            connection.execute(sa.insert(schema.events), [
                {"kind": "test_finished", "message": row["end_reason"], "test_id": row["tid"],
                 "channel": channel_of[row["tid"]], "unix_time_s": row["end_unix_s"],
                 "data": json.dumps({"status": row["status"]})} for row in rows])

    def tests(self, *, station: str | None = None, battery: str | None = None,
              status: TestStatus | None = None, since_unix_s: float | None = None,
              newest_first: bool = False, limit: int | None = None) -> list[TestRecord]:
        """The tests (all, or those of ``station``, on ``battery``, with ``status``, started
        at or after ``since_unix_s``), oldest first unless ``newest_first``; at most
        ``limit``."""
        t = schema.tests
        query = _TESTS_QUERY
        if station is not None:
            query = query.where(t.c.station == station)
        if battery is not None:
            query = query.where(schema.batteries.c.name == battery)
        if status is not None:
            query = query.where(t.c.status == status.value)
        if since_unix_s is not None:
            query = query.where(t.c.start_unix_s >= since_unix_s)
        query = query.order_by(t.c.id.desc() if newest_first else t.c.id).limit(limit)
        with self.engine.connect() as connection:
            return [_test_record(row) for row in connection.execute(query).mappings()]

    def delete_test(self, test_id: int) -> None:
        """Remove test ``test_id`` and every row of it (samples, aux values, steps, events, its
        plan position), in one transaction; a queue entry that started it forgets it. A
        running test is refused (StorageError), as is an unknown one."""
        t = schema.tests
        with self.engine.begin() as connection:
            status = connection.execute(sa.select(t.c.status).where(t.c.id == int(test_id))
                                        ).scalar()
            if status is None:
                raise StorageError(f"no test {test_id}")
            if status == TestStatus.RUNNING.value:
                raise StorageError(f"test {test_id} is running; stop it first")
            for table in (schema.sample_aux, schema.samples, schema.steps, schema.events,
                          schema.test_positions):
                connection.execute(table.delete().where(table.c.test_id == int(test_id)))
            queue = schema.test_queue
            connection.execute(queue.update().where(queue.c.test_id == int(test_id))
                               .values(test_id=None))
            connection.execute(t.delete().where(t.c.id == int(test_id)))

    def test(self, test_id: int) -> TestRecord | None:
        """The test with this id, or None."""
        query = _TESTS_QUERY.where(schema.tests.c.id == int(test_id))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else _test_record(row)

    # --- events --------------------------------------------------------------------------------

    def add_event(
        self,
        *,
        kind: str,
        message: str,
        test_id: int | None = None,
        channel: str | None = None,
        unix_time_s: float,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an event (a test started, a limit tripped, an operator command...)."""
        row = {
            "kind": check_name(kind, "event kind", length=schema.KIND_LENGTH),
            # Messages quote devices and libraries too: stored, with what text may not hold
            # written as escapes.
            "message": printable(message),
            "test_id": None if test_id is None else int(test_id),
            "channel": channel,
            "unix_time_s": _float("unix_time_s", unix_time_s),
            "data": _json(f"data of {kind!r} event", data),
        }
        with self._transaction() as connection:
            connection.execute(sa.insert(schema.events).values(row))

    def events(self, test_id: int | None = None) -> list[EventRecord]:
        """The events of one test, or all events, in the order they were recorded."""
        table = schema.events
        query = sa.select(table).order_by(table.c.id)
        if test_id is not None:
            query = query.where(table.c.test_id == int(test_id))
        with self.engine.connect() as connection:
            return [
                EventRecord(
                    id=row.id,
                    test_id=row.test_id,
                    unix_time_s=row.unix_time_s,
                    kind=row.kind,
                    channel=row.channel,
                    message=row.message,
                    data=json.loads(row.data),
                )
                for row in connection.execute(query)
            ]

    # --- samples and steps ---------------------------------------------------------------------

    def samples(self, test_id: int, columns: Sequence[str] | None = None, *,
                from_seq: int = 1) -> dict[str, np.ndarray]:
        """A test's samples (from ``from_seq`` on) in ``seq`` order, one numpy array per column.

        ``columns`` names sample columns (see docs/schema.md) and aux signals; by default all of
        them except ``test_id``. Integer columns come as int64, the rest as float64 with NaN
        where nothing is stored. Raise StorageError for an unknown test, ValueError for an
        unknown column.
        """
        test_id = int(test_id)
        samples, aux = schema.samples, schema.sample_aux
        base = [c for c in schema.SAMPLE_COLUMNS if c != "test_id"]
        with self.engine.connect() as connection:
            query = sa.select(schema.tests.c.id).where(schema.tests.c.id == test_id)
            if connection.execute(query).first() is None:
                raise StorageError(f"no test with id {test_id}")
            query = sa.select(aux.c.name).where(aux.c.test_id == test_id).distinct()
            aux_names = sorted(connection.execute(query).scalars())
            wanted = base + aux_names if columns is None else list(columns)
            unknown = [c for c in wanted if c not in base and c not in aux_names]
            if unknown:
                raise ValueError(
                    f"test {test_id} has no sample column {unknown[0]!r}; "
                    f"it has {', '.join(base + aux_names)}"
                )
            # seq is always fetched: aux values are placed by it.
            fetch = ["seq", *(c for c in wanted if c in base and c != "seq")]
            query = (
                sa.select(*(samples.c[c] for c in fetch))
                .where(samples.c.test_id == test_id, samples.c.seq >= from_seq)
                .order_by(samples.c.seq)
            )
            result = sample_arrays(fetch, connection.execute(query).all())
            seq = result["seq"]
            for name in (c for c in wanted if c in aux_names):
                query = sa.select(aux.c.seq, aux.c.value).where(
                    aux.c.test_id == test_id, aux.c.name == name, aux.c.seq >= from_seq
                )
                found = sample_arrays(["seq", name], connection.execute(query).all())
                result[name] = np.full(len(seq), np.nan)
                result[name][np.searchsorted(seq, found["seq"])] = found[name]
        return {name: result[name] for name in wanted}

    def position(self, test_id: int) -> PositionRecord | None:
        """The plan position a running test last committed (see SampleWriter.submit_positions),
        or None."""
        table = schema.test_positions
        query = sa.select(table).where(table.c.test_id == int(test_id))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return PositionRecord(row.test_id, row.step_no, row.start_seq, row.unix_time_s,
                              json.loads(row.state))

    def last_sample_unix(self, test_ids: Sequence[int]) -> float | None:
        """The latest ``unix_time_s`` of the last samples of ``test_ids`` (None: no sample)."""
        samples = schema.samples
        latest: float | None = None
        with self.engine.connect() as connection:
            for test_id in test_ids:  # the last sample by the primary key: no scan
                value = connection.execute(
                    sa.select(samples.c.unix_time_s).where(samples.c.test_id == int(test_id))
                    .order_by(samples.c.seq.desc()).limit(1)).scalar()
                if value is not None and (latest is None or value > latest):
                    latest = float(value)
        return latest

    def cycles(self, test_id: int) -> list[CycleRecord]:
        """The cycles of a test so far (its finished steps summed per cycle), in order."""
        view = sa.table("cycles", *(sa.column(f.name) for f in fields(CycleRecord)))
        query = sa.select(view).where(view.c.test_id == int(test_id)).order_by(view.c.cycle)
        with self.engine.connect() as connection:
            return [_cycle(row._mapping) for row in connection.execute(query)]

    def steps(self, test_id: int) -> list[StepRecord]:
        """The finished steps of a test in the order they ran."""
        table = schema.steps
        query = sa.select(table).where(table.c.test_id == int(test_id)).order_by(table.c.step_no)
        with self.engine.connect() as connection:
            return [
                StepRecord(
                    test_id=row.test_id,
                    step_no=row.step_no,
                    step_index=row.step_index,
                    plan_line=row.plan_line,
                    cycle=row.cycle,
                    mode=row.mode,
                    text=row.text,
                    start_seq=row.start_seq,
                    end_seq=row.end_seq,
                    start_test_time_s=row.start_test_time_s,
                    end_test_time_s=row.end_test_time_s,
                    ah=_nan_if_null(row.ah),
                    wh=_nan_if_null(row.wh),
                    end_reason=row.end_reason,
                    charge_ah=_nan_if_null(row.charge_ah),
                    discharge_ah=_nan_if_null(row.discharge_ah),
                    charge_wh=_nan_if_null(row.charge_wh),
                    discharge_wh=_nan_if_null(row.discharge_wh),
                    temperature_min_c=_nan_if_null(row.temperature_min_c),
                    temperature_max_c=_nan_if_null(row.temperature_max_c),
                )
                for row in connection.execute(query)
            ]


#: The values of a battery :meth:`Database.update_battery` changes.
_EDITABLE_BATTERY_FIELDS = (
    "chemistry", "nominal_capacity_ah", "nominal_voltage_v", "voltage_max_v", "voltage_min_v",
    "current_max_charge_a", "current_max_discharge_a", "temperature_max_c", "metadata")


def _battery_row(name: str, *, chemistry: str, nominal_capacity_ah: float,
                 nominal_voltage_v: float | None, voltage_max_v: float | None,
                 voltage_min_v: float | None, current_max_charge_a: float | None,
                 current_max_discharge_a: float | None, temperature_max_c: float | None,
                 metadata: Mapping[str, Any] | None, created_unix_s: float) -> dict[str, Any]:
    """A battery's row, checked by the registry's rules (ValueError naming the field): one
    rule for registering and for editing."""
    row: dict[str, Any] = {
        "name": check_identifier(name, "battery name"),
        "chemistry": check_identifier(chemistry, "battery chemistry",
                                     length=schema.KIND_LENGTH),
        "nominal_capacity_ah": _float("nominal_capacity_ah", nominal_capacity_ah),
        "nominal_voltage_v": _optional_float("nominal_voltage_v", nominal_voltage_v),
        "voltage_max_v": _optional_float("voltage_max_v", voltage_max_v),
        "voltage_min_v": _optional_float("voltage_min_v", voltage_min_v),
        "current_max_charge_a": _optional_float("current_max_charge_a", current_max_charge_a),
        "current_max_discharge_a": _optional_float(
            "current_max_discharge_a", current_max_discharge_a
        ),
        "temperature_max_c": _optional_float("temperature_max_c", temperature_max_c),
        "metadata": _json("battery metadata", metadata),
        "created_unix_s": _float("created_unix_s", created_unix_s),
    }
    if row["nominal_capacity_ah"] <= 0:
        raise ValueError(f"nominal_capacity_ah must be positive, not {nominal_capacity_ah!r}")
    for field in ("current_max_charge_a", "current_max_discharge_a"):
        if row[field] is not None and row[field] <= 0:
            raise ValueError(f"{field} is a magnitude and must be positive, not {row[field]}")
    for field, dimension in _BATTERY_DIMENSIONS.items():
        if row[field] is not None:
            try:
                check_physical(row[field], dimension)
            except UnitError as error:
                raise ValueError(f"{field}: {error}") from None
    low, high = row["voltage_min_v"], row["voltage_max_v"]
    if low is not None and high is not None and low >= high:
        raise ValueError(f"voltage_min_v ({low} V) must be below voltage_max_v ({high} V)")
    return row


def _battery_record(row: sa.RowMapping) -> BatteryRecord:
    values = dict(row)
    values["metadata"] = json.loads(values["metadata"])
    return BatteryRecord(**values)


_TESTS_QUERY = (
    sa.select(
        schema.tests,
        schema.channels.c.name.label("channel"),
        schema.batteries.c.name.label("battery"),
    )
    .join(schema.channels, schema.tests.c.channel_id == schema.channels.c.id)
    .outerjoin(schema.batteries, schema.tests.c.battery_id == schema.batteries.c.id)
)


def _test_record(row: sa.RowMapping) -> TestRecord:
    values = {k: v for k, v in row.items() if k not in ("channel_id", "battery_id")}
    values["status"] = TestStatus(values["status"])
    return TestRecord(**values)

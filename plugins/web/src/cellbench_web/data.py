"""Reading tests, cycles, events and samples from a station database or a central one.

A station database holds one station's tests; a central database (filled by the sync-sql
target, docs/sync.md) holds many, each row keyed by ``origin``, the station it came from. Both
have the tables of :mod:`cellbench_sdk.storage.schema`; :class:`Reader` reads either, every
query naming the station, so the API and pages are the same for both. Everything here blocks:
the web app calls it in worker threads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cellbench_sdk import TestStatus
from cellbench_sdk.storage import CHUNK_ROWS, SampleChunk, TestRecord, read_chunk_from, schema

#: The sample columns the API serves (every column of ``samples`` but ``test_id``).
SAMPLE_COLUMNS = tuple(c.name for c in schema.samples.columns if c.name != "test_id")
#: Those of them that hold integers (the rest are floats).
SAMPLE_INT_COLUMNS = schema.SAMPLE_INT_COLUMNS
#: Columns a plot may ask for: the measured and counted ones.
SERIES_COLUMNS = ("voltage_v", "current_a", "power_w", "temperature_c", "ah", "wh")
#: Samples per page at most.
MAX_PAGE = 100_000
#: Buckets of a downsampled series at most (a screen is a few thousand pixels wide).
MAX_BUCKETS = 10_000


class NotFound(LookupError):
    """No such station, test or battery (the message names it)."""


def _with_origin(table: sa.Table, metadata: sa.MetaData) -> sa.Table:
    """The central database's copy of a station table: ``origin`` first (sync-sql's layout)."""
    columns = [sa.Column("origin", sa.String(schema.NAME_LENGTH), primary_key=True)]
    columns += [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in table.columns]
    return sa.Table(table.name, metadata, *columns)


def _clean(value: Any) -> Any:
    """A value as JSON can hold it: NaN and infinities (never stored, but computed) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class TestFilter:
    """Which tests a list shows: each given field narrows it."""

    station: str | None = None
    battery: str | None = None
    status: str | None = None
    since_unix_s: float | None = None
    until_unix_s: float | None = None
    search: str | None = None
    limit: int = 100
    offset: int = 0

    __test__ = False  # not a pytest test class


class Reader:
    """Reads the database behind ``engine``: a station's (``central`` False: the station's name
    is the ``station`` column of its tests) or a central one (``central`` True)."""

    def __init__(self, engine: sa.Engine, *, central: bool) -> None:
        self.engine, self.central = engine, central
        if central:
            metadata = sa.MetaData()
            self.tables = {t.name: _with_origin(t, metadata) for t in (
                schema.batteries, schema.channels, schema.tests, schema.samples,
                schema.sample_aux, schema.steps, schema.events)}
        else:
            self.tables = {t.name: t for t in (
                schema.batteries, schema.channels, schema.tests, schema.samples,
                schema.sample_aux, schema.steps, schema.events)}
        self.cycles_view = sa.table("cycles", *(sa.column(name) for name in (
            ["origin"] if central else []) + list(_CYCLE_COLUMNS)))

    @classmethod
    def open(cls, url: str) -> Reader:
        """A reader of the database at ``url``, central if its tests have an ``origin`` column;
        ValueError if it holds no cellbench tables."""
        engine = sa.create_engine(url, pool_pre_ping=True)
        try:
            columns = {c["name"] for c in sa.inspect(engine).get_columns("tests")}
        except sa.exc.NoSuchTableError:
            engine.dispose()
            raise ValueError(f"{sa.make_url(url).render_as_string()}: no cellbench database "
                             "(it has no tests table)") from None
        except sa.exc.SQLAlchemyError as err:
            engine.dispose()
            raise ValueError(f"{sa.make_url(url).render_as_string()}: {err}") from None
        return cls(engine, central="origin" in columns)

    # ---- keys ----------------------------------------------------------------------------

    def _station(self, table: sa.Table, station: str) -> sa.ColumnElement[bool]:
        """The condition that a row of ``table`` belongs to ``station``."""
        if self.central:
            return table.c.origin == station
        return sa.true()

    def _test_key(self, table: Any, station: str, test_id: int) -> sa.ColumnElement[bool]:
        key: sa.ColumnElement[bool] = table.c.test_id == test_id
        return sa.and_(table.c.origin == station, key) if self.central else key

    # ---- stations and channels -----------------------------------------------------------

    def stations(self) -> list[dict[str, Any]]:
        """Every station with tests here: name, test count, the newest test's start."""
        t = self.tables["tests"]
        key = t.c.origin if self.central else t.c.station
        query = (sa.select(key.label("name"), sa.func.count().label("tests"),
                           sa.func.max(t.c.start_unix_s).label("last_start_unix_s"))
                 .group_by(key).order_by(key))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def channels(self, station: str) -> list[dict[str, Any]]:
        """The channels of ``station`` as stored (what the last sync brought, for a central
        database): name, driver, and the newest test on each."""
        c, t = self.tables["channels"], self.tables["tests"]
        newest = (sa.select(t.c.channel_id, sa.func.max(t.c.id).label("test_id"))
                  .where(self._station(t, station)).group_by(t.c.channel_id).subquery())
        join_on = newest.c.test_id == t.c.id
        if self.central:
            join_on = sa.and_(join_on, t.c.origin == station)
        query = (sa.select(c.c.name, c.c.driver, t.c.id.label("test_id"),
                           t.c.name.label("test_name"), t.c.status, t.c.start_unix_s,
                           t.c.end_unix_s)
                 .select_from(c.join(newest, newest.c.channel_id == c.c.id, isouter=True)
                              .join(t, join_on, isouter=True))
                 .where(self._station(c, station)).order_by(c.c.id))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    # ---- tests ---------------------------------------------------------------------------

    def _tests_query(self) -> sa.Select[Any]:
        t, c, b = self.tables["tests"], self.tables["channels"], self.tables["batteries"]
        channel_on = c.c.id == t.c.channel_id
        battery_on = b.c.id == t.c.battery_id
        if self.central:
            channel_on = sa.and_(channel_on, c.c.origin == t.c.origin)
            battery_on = sa.and_(battery_on, b.c.origin == t.c.origin)
        station = t.c.origin if self.central else t.c.station
        return (sa.select(station.label("station"), t.c.id, t.c.name,
                          c.c.name.label("channel"), b.c.name.label("battery"), t.c.plan_name,
                          t.c.status, t.c.end_reason, t.c.start_unix_s, t.c.end_unix_s,
                          t.c.sample_period_s)
                .select_from(t.join(c, channel_on, isouter=True)
                             .join(b, battery_on, isouter=True)))

    def tests(self, where: TestFilter) -> list[dict[str, Any]]:
        """The tests ``where`` selects, newest first."""
        t, b = self.tables["tests"], self.tables["batteries"]
        station = t.c.origin if self.central else t.c.station
        query = self._tests_query()
        if where.station is not None:
            query = query.where(station == where.station)
        if where.battery is not None:
            query = query.where(b.c.name == where.battery)
        if where.status is not None:
            query = query.where(t.c.status == where.status)
        if where.since_unix_s is not None:
            query = query.where(t.c.start_unix_s >= where.since_unix_s)
        if where.until_unix_s is not None:
            query = query.where(t.c.start_unix_s < where.until_unix_s)
        if where.search:
            pattern = "%" + where.search.replace("\\", "\\\\").replace("%", "\\%") \
                .replace("_", "\\_") + "%"
            query = query.where(sa.or_(t.c.name.ilike(pattern, escape="\\"),
                                       t.c.plan_name.ilike(pattern, escape="\\")))
        query = (query.order_by(t.c.start_unix_s.desc(), t.c.id.desc(), station)
                 .limit(where.limit).offset(where.offset))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def test(self, station: str, test_id: int) -> dict[str, Any]:
        """One test with its plan text; NotFound if there is none."""
        t = self.tables["tests"]
        query = self._tests_query().add_columns(t.c.plan_text).where(
            self._station(t, station), t.c.id == test_id)
        if not self.central:
            query = query.where(t.c.station == station)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"no test {test_id} of station {station!r}")
        return dict(row)

    def cycles(self, station: str, test_id: int) -> list[dict[str, Any]]:
        """The per-cycle table of a test (the ``cycles`` view)."""
        self.test(station, test_id)
        v = self.cycles_view
        query = (sa.select(*(v.c[name] for name in _CYCLE_COLUMNS))
                 .where(self._test_key(v, station, test_id)).order_by(v.c.cycle))
        with self.engine.connect() as connection:
            return [{k: _clean(x) for k, x in row.items()}
                    for row in connection.execute(query).mappings()]

    def steps(self, station: str, test_id: int) -> list[dict[str, Any]]:
        """The finished steps of a test, in order."""
        self.test(station, test_id)
        s = self.tables["steps"]
        query = (sa.select(*(s.c[c.name] for c in schema.steps.columns))
                 .where(self._test_key(s, station, test_id)).order_by(s.c.step_no))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def events(self, station: str, test_id: int | None = None, *, kind: str | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:
        """A test's events (or the station's newest ``limit`` ones), in order; only those of
        ``kind`` if given."""
        e = self.tables["events"]
        query = sa.select(*(e.c[c.name] for c in schema.events.columns))
        if kind is not None:
            query = query.where(e.c.kind == kind)
        if test_id is not None:
            self.test(station, test_id)
            query = query.where(self._test_key(e, station, test_id)).order_by(e.c.id)
        else:
            query = query.where(self._station(e, station)).order_by(e.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        for row in rows:
            row["data"] = json.loads(row["data"] or "{}")
        return rows if test_id is not None else rows[::-1]

    def batteries(self, station: str) -> list[dict[str, Any]]:
        """The batteries registered at ``station``."""
        b = self.tables["batteries"]
        query = (sa.select(*(b.c[c.name] for c in schema.batteries.columns if c.name != "id"))
                 .where(self._station(b, station)).order_by(b.c.name))
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        for row in rows:
            row["metadata"] = json.loads(row["metadata"] or "{}")
        return rows

    # ---- samples -------------------------------------------------------------------------

    def _samples_query(self, station: str, test_id: int, columns: Sequence[str],
                       after_seq: int) -> sa.Select[Any]:
        s = self.tables["samples"]
        return (sa.select(*(s.c[name] for name in columns))
                .where(self._test_key(s, station, test_id), s.c.seq > after_seq)
                .order_by(s.c.seq))

    def samples(self, station: str, test_id: int, *, after_seq: int = 0,
                limit: int = 10_000, columns: Sequence[str] = SAMPLE_COLUMNS
                ) -> list[tuple[Any, ...]]:
        """Up to ``limit`` samples after ``after_seq`` as rows of ``columns``."""
        self.test(station, test_id)
        query = self._samples_query(station, test_id, columns, after_seq).limit(limit)
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def sample_chunks(self, station: str, test_id: int, *, after_seq: int = 0,
                      columns: Sequence[str] = SAMPLE_COLUMNS, chunk_rows: int = 50_000
                      ) -> Iterator[list[tuple[Any, ...]]]:
        """Every sample after ``after_seq``, ``chunk_rows`` rows at a time (a keyset walk:
        each chunk is one short query, so no transaction stays open while a client reads)."""
        self.test(station, test_id)
        fetch = list(columns) if "seq" in columns else ["seq", *columns]
        position = fetch.index("seq")
        while True:
            query = self._samples_query(station, test_id, fetch, after_seq).limit(chunk_rows)
            with self.engine.connect() as connection:
                # The driver's own tuples: sample columns are plain numbers every driver
                # returns as int or float, and building SQLAlchemy rows would cost a third
                # of a stream.
                rows = list(connection.execute(query).cursor.fetchall())
            if not rows:
                return
            after_seq = rows[-1][position]
            if fetch != list(columns):
                rows = [row[1:] for row in rows]
            yield rows
            if len(rows) < chunk_rows:
                return

    # ---- whole tests for the export formats -------------------------------------------------

    def test_record(self, station: str, test_id: int) -> TestRecord:
        """The test as an export format takes it; NotFound if there is none."""
        t = self.tables["tests"]
        found = self.test(station, test_id)
        with self.engine.connect() as connection:
            source, stored_station = connection.execute(
                sa.select(t.c.plan_source, t.c.station)
                .where(self._station(t, station), t.c.id == test_id)).one()
        return TestRecord(
            id=found["id"], name=found["name"], channel=found["channel"] or "",
            battery=found["battery"], plan_name=found["plan_name"], plan_source=source,
            plan_text=found["plan_text"], status=TestStatus(found["status"]),
            end_reason=found["end_reason"], start_unix_s=found["start_unix_s"],
            end_unix_s=found["end_unix_s"], sample_period_s=found["sample_period_s"],
            station=stored_station)

    def aux_names(self, station: str, test_id: int) -> list[str]:
        """The names of the test's aux signals, sorted."""
        aux = self.tables["sample_aux"]
        with self.engine.connect() as connection:
            return sorted(connection.execute(
                sa.select(aux.c.name).where(self._test_key(aux, station, test_id))
                .distinct()).scalars())

    def export_chunks(self, station: str, test_id: int, chunk_rows: int = CHUNK_ROWS
                      ) -> Iterator[SampleChunk]:
        """Every sample of the test with its aux values, ``chunk_rows`` at a time in ``seq``
        order (as :func:`cellbench_sdk.storage.sample_chunks` reads a station database): what
        an export format writes."""
        samples, aux = self.tables["samples"], self.tables["sample_aux"]
        after_seq = 0
        while True:
            with self.engine.connect() as connection:
                chunk = read_chunk_from(
                    connection, samples, aux,
                    lambda table: self._test_key(table, station, test_id), after_seq,
                    chunk_rows)
            if not len(chunk):
                return
            yield chunk
            after_seq = int(chunk.columns["seq"][-1])

    def series(self, station: str, test_id: int, columns: Sequence[str], *,
               start_s: float | None, end_s: float | None, buckets: int
               ) -> dict[str, Any]:
        """``columns`` of a test between test times ``start_s`` and ``end_s`` (default: all),
        downsampled in the database to ``buckets`` equal time buckets: per bucket the first
        and last test time and each column's min and max (a plot drawn from those shows every
        peak). Step and cycle changes come as marks."""
        test = self.test(station, test_id)
        s = self.tables["samples"]
        key = self._test_key(s, station, test_id)
        with self.engine.connect() as connection:
            low, high = connection.execute(sa.select(
                sa.func.min(s.c.test_time_s), sa.func.max(s.c.test_time_s)).where(key)).one()
            start = low if start_s is None or low is None else max(start_s, low)
            end = high if end_s is None or high is None else min(end_s, high)
            if start is None or end is None or end < start:
                return {"station": station, "test_id": test["id"], "start_s": start_s,
                        "end_s": end_s, "bucket_s": None, "t_min": [], "t_max": [],
                        **{f"{c}_min": [] for c in columns}, **{f"{c}_max": [] for c in columns},
                        "marks": []}
            width = max((end - start) / buckets, 1e-9)
            index = sa.cast(sa.func.floor((s.c.test_time_s - start) / width), sa.BigInteger)
            bucket = sa.case((index >= buckets, buckets - 1), else_=index).label("bucket")
            aggregates = [sa.func.min(s.c.test_time_s), sa.func.max(s.c.test_time_s)]
            for name in columns:
                aggregates += [sa.func.min(s.c[name]), sa.func.max(s.c[name])]
            where = sa.and_(key, s.c.test_time_s >= start, s.c.test_time_s <= end)
            rows = connection.execute(sa.select(bucket, *aggregates).where(where)
                                      .group_by(bucket).order_by(bucket)).all()
            st = self.tables["steps"]
            # Bounded by what was asked, not by the samples: step 1 begins before its first
            # sample.
            marked = self._test_key(st, station, test_id)
            if start_s is not None:
                marked = sa.and_(marked, st.c.start_test_time_s >= start_s)
            if end_s is not None:
                marked = sa.and_(marked, st.c.start_test_time_s <= end_s)
            marks = [dict(row) for row in connection.execute(
                sa.select(st.c.step_no, st.c.cycle, st.c.mode,
                          st.c.start_test_time_s.label("test_time_s"))
                .where(marked).order_by(st.c.step_no)).mappings()]
        result: dict[str, Any] = {"station": station, "test_id": test["id"], "start_s": start,
                                  "end_s": end, "bucket_s": width,
                                  "t_min": [row[1] for row in rows],
                                  "t_max": [row[2] for row in rows]}
        for position, name in enumerate(columns):
            result[f"{name}_min"] = [_clean(row[3 + 2 * position]) for row in rows]
            result[f"{name}_max"] = [_clean(row[4 + 2 * position]) for row in rows]
        result["marks"] = marks
        return result


#: The columns of the ``cycles`` view (schema.cycles_view), as the API serves them.
_CYCLE_COLUMNS = ("test_id", "cycle", "steps", "start_seq", "end_seq", "start_test_time_s",
                  "end_test_time_s", "charge_ah", "discharge_ah", "charge_wh", "discharge_wh",
                  "coulombic_efficiency", "energy_efficiency", "mean_charge_v",
                  "mean_discharge_v", "temperature_min_c", "temperature_max_c",
                  "end_reasons")

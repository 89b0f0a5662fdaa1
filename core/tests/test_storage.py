"""The database: migrations, SQLite setup, batteries, channels, tests and events, on every
backend (see conftest.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from cellbench_core.events import TestStatus
from cellbench_core.storage import (
    Database,
    StorageError,
    TestEnd,
    TestStart,
    open_database,
    upgrade,
)
from cellbench_core.storage.schema import VERSION_TABLE, metadata

NewTest = Callable[..., int]


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", "cellbench_core.storage:migrations")
    return ScriptDirectory.from_config(config)


def test_migrations_create_exactly_the_schema(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert context.get_current_revision() == _script().get_current_head()
        assert compare_metadata(context, metadata) == []


def _alembic(connection: sa.Connection) -> Config:
    """An Alembic configuration that migrates ``connection`` with the station's revisions."""
    config = Config()
    config.set_main_option("script_location", "cellbench_core.storage:migrations")
    config.attributes["connection"] = connection
    return config


def test_upgrade_is_idempotent_and_downgrade_reverses_it(storage_url: str) -> None:
    upgrade(storage_url)
    upgrade(storage_url)
    engine = sa.create_engine(storage_url)
    try:
        with engine.begin() as connection:
            config = _alembic(connection)
            command.downgrade(config, "base")
            assert set(sa.inspect(connection).get_table_names()) == {VERSION_TABLE}
    finally:
        engine.dispose()
    upgrade(storage_url)
    engine = sa.create_engine(storage_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) == {VERSION_TABLE, *metadata.tables}
    finally:
        engine.dispose()


def test_sqlite_file_gets_directory_pragmas_and_clustered_samples(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "station.sqlite3"
    db = open_database(f"sqlite:///{path}")
    try:
        assert path.is_file()
        with db.engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert pragma("PRAGMA cache_size").scalar() == -65536
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            for table in ("samples", "sample_aux"):
                sql = pragma("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar()
                assert isinstance(sql, str)
                assert "WITHOUT ROWID" not in sql  # appended in rowid order (docs/schema.md)
            indexes = pragma(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'samples'"
            ).scalars()
            assert list(indexes) == ["sqlite_autoindex_samples_1"]  # the primary key only
    finally:
        db.close()
    # Any other program opening the file sees WAL mode: it is stored in the file.
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="in-memory SQLite"):
        open_database(url)


def test_batteries_round_trip_and_names_are_unique(db: Database) -> None:
    first = db.add_battery(
        "LFP-26650-A",
        "LFP",
        2.5,
        nominal_voltage_v=3.2,
        voltage_max_v=3.65,
        voltage_min_v=2.5,
        current_max_charge_a=2.5,
        current_max_discharge_a=10.0,
        temperature_max_c=55.0,
        metadata={"supplier": "ACME", "lot": 17},
        created_unix_s=1.7e9,
    )
    second = db.add_battery("NMC-18650-B", "NMC", 3.0)
    assert first != second
    battery = db.battery("LFP-26650-A")
    assert battery is not None
    assert battery.id == first
    assert (battery.chemistry, battery.nominal_capacity_ah, battery.nominal_voltage_v) == (
        "LFP",
        2.5,
        3.2,
    )
    assert (battery.voltage_min_v, battery.voltage_max_v) == (2.5, 3.65)
    assert (battery.current_max_charge_a, battery.current_max_discharge_a) == (2.5, 10.0)
    assert battery.temperature_max_c == 55.0
    assert battery.metadata == {"supplier": "ACME", "lot": 17}
    assert battery.created_unix_s == 1.7e9
    plain = db.battery("NMC-18650-B")
    assert plain is not None
    assert plain.voltage_max_v is None
    assert plain.metadata == {}
    assert [b.name for b in db.batteries()] == ["LFP-26650-A", "NMC-18650-B"]
    assert db.battery("missing") is None
    with pytest.raises(StorageError, match="a battery named 'LFP-26650-A' already exists"):
        db.add_battery("LFP-26650-A", "LFP", 2.0)
    assert len(db.batteries()) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"nominal_capacity_ah": 0.0}, "nominal_capacity_ah must be positive"),
        ({"nominal_capacity_ah": float("nan")}, "nominal_capacity_ah must be a finite number"),
        ({"voltage_min_v": 3.0, "voltage_max_v": 2.0}, "voltage_min_v .* must be below"),
        ({"current_max_discharge_a": -1.0}, "current_max_discharge_a is a magnitude"),
        ({"temperature_max_c": -300.0}, "temperature_max_c: -300 °C is outside the physical "
                                        "range of a temperature, -100 °C to 500 °C"),
        ({"nominal_capacity_ah": 1e-300}, "nominal_capacity_ah: 1e-300 Ah is outside the "
                                          "physical range of a charge, 1e-06 Ah to 100000 Ah"),
        ({"voltage_max_v": 5e3}, "voltage_max_v: 5000 V is outside the physical range"),
        ({"current_max_charge_a": 1e5}, "current_max_charge_a: 100000 A is outside"),
        ({"name": " "}, "battery name must not be empty"),
        ({"metadata": {"bad": float("inf")}}, "battery metadata cannot be stored as JSON"),
    ],
)
def test_bad_battery_values_are_named(
    db: Database, arguments: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"name": "cell", "chemistry": "LFP", "nominal_capacity_ah": 1.0}
    with pytest.raises(ValueError, match=message):
        db.add_battery(**(values | arguments))  # type: ignore[arg-type]
    assert db.batteries() == []


def test_editing_a_battery_applies_the_rules_of_registering_it(db: Database) -> None:
    db.add_battery("cell", "LFP", 1.0, voltage_min_v=2.5, voltage_max_v=3.6,
                   created_unix_s=1.7e9)
    edited = db.update_battery("cell", {"voltage_max_v": 3.65, "temperature_max_c": 55.0,
                                        "metadata": {"lot": "7"}})
    assert (edited.voltage_max_v, edited.temperature_max_c, edited.voltage_min_v) == (
        3.65, 55.0, 2.5)
    assert (dict(edited.metadata), edited.created_unix_s) == ({"lot": "7"}, 1.7e9)
    assert db.update_battery("cell", {"temperature_max_c": None}).temperature_max_c is None
    for changes, message in (
            ({"voltage_min_v": 4.0}, r"voltage_min_v \(4.0 V\) must be below voltage_max_v"),
            ({"nominal_capacity_ah": -1.0}, "nominal_capacity_ah must be positive"),
            ({"name": "other"}, "no battery field 'name'")):
        with pytest.raises(ValueError, match=message):
            db.update_battery("cell", changes)
    assert db.battery("cell") == db.update_battery("cell", {})  # nothing half-changed
    with pytest.raises(StorageError, match="no battery called 'gone'"):
        db.update_battery("gone", {"chemistry": "NMC"})


def test_ensure_channel_creates_once_then_updates(db: Database) -> None:
    first = db.ensure_channel("sim/3", "sim", {"capacity_ah": 2.0})
    assert db.ensure_channel("sim/3", "sim", {"capacity_ah": 2.0}) == first
    assert db.ensure_channel("sim/3", "sim2", {"capacity_ah": 3.0}) == first
    assert db.ensure_channel("sim/4", "sim", {}) != first
    with db.engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT driver, settings FROM channels WHERE name = 'sim/3'")
        ).one()
    assert tuple(row) == ("sim2", '{"capacity_ah": 3.0}')


def test_test_lifecycle(db: Database) -> None:
    db.add_battery("cell-1", "NMC", 3.0)
    db.ensure_channel("sim/1", "sim", {})
    (test_id,) = db.start_tests([TestStart(
        name="capacity check", channel="sim/1", driver="sim", battery="cell-1",
        plan_name="capacity", plan_source="plans/capacity.yaml",
        plan_text="steps:\n  - cc 1 A until voltage >= 4.2 V\n", sample_period_s=0.5,
        station="lab-2", start_unix_s=1.7e9)])
    running = db.test(test_id)
    assert running is not None
    assert running.status is TestStatus.RUNNING
    assert (running.channel, running.battery, running.station) == ("sim/1", "cell-1", "lab-2")
    assert running.plan_text == "steps:\n  - cc 1 A until voltage >= 4.2 V\n"
    assert (running.end_unix_s, running.end_reason) == (None, None)

    db.finish_test(test_id, "stopped", "operator pressed stop", 1.7e9 + 60.0)
    stopped = db.test(test_id)
    assert stopped is not None
    assert stopped.status is TestStatus.STOPPED
    assert (stopped.end_reason, stopped.end_unix_s) == ("operator pressed stop", 1.7e9 + 60.0)
    assert [t.id for t in db.tests()] == [test_id]
    assert db.test(test_id + 1000) is None


def test_test_errors_are_clear(db: Database, new_test: NewTest) -> None:
    start = TestStart(name="t", channel="sim/1", driver="sim", battery=None, plan_name="p",
                      plan_source="p.yaml", plan_text="", sample_period_s=1.0, station="s",
                      start_unix_s=1.7e9)
    with pytest.raises(StorageError, match="no battery named 'ghost'"):
        db.start_tests([replace(start, battery="ghost")])
    with pytest.raises(ValueError, match="sample_period_s must be positive"):
        db.start_tests([replace(start, sample_period_s=0.0)])
    with pytest.raises(ValueError, match="test name must not be empty"):
        db.start_tests([replace(start, name="")])
    assert db.tests() == []
    test_id = new_test()
    with pytest.raises(ValueError, match="not 'running'"):
        db.finish_test(test_id, "running", "", 1.7e9)
    with pytest.raises(ValueError, match="not 'done'"):
        db.finish_test(test_id, "done", "", 1.7e9)
    with pytest.raises(StorageError, match="no test with id 999"):
        db.finish_test(999, "finished", "", 1.7e9)


def test_events_round_trip(db: Database, new_test: NewTest) -> None:
    test_id = new_test()
    db.add_event(kind="station", message="station started", unix_time_s=1.7e9)
    db.add_event(
        kind="alarm",
        message="voltage above 4.25 V",
        test_id=test_id,
        channel="sim/1",
        unix_time_s=1.7e9 + 1.5,
        data={"voltage_v": 4.26, "limit_v": 4.25},
    )
    every = [e for e in db.events() if e.kind != "test_started"]
    assert [(e.kind, e.test_id, e.channel) for e in every] == [
        ("station", None, None),
        ("alarm", test_id, "sim/1"),
    ]
    started, alarm = db.events(test_id)
    assert started.kind == "test_started"
    assert alarm.message == "voltage above 4.25 V"
    assert alarm.unix_time_s == 1.7e9 + 1.5
    assert alarm.data == {"voltage_v": 4.26, "limit_v": 4.25}
    assert every[0].data == {}


def test_numpy_scalars_are_stored_as_plain_numbers(db: Database, new_test: NewTest) -> None:
    db.add_battery("np-cell", "LFP", np.float64(2.5), voltage_max_v=np.float64(3.65))
    test_id = new_test(battery="np-cell")
    db.finish_test(np.int64(test_id), "finished", "plan ended", np.float64(1.7e9 + 5))  # type: ignore[arg-type]
    db.add_event(kind="x", message="m", test_id=np.int64(test_id), unix_time_s=np.float64(1.7e9))  # type: ignore[arg-type]
    with db.engine.connect() as connection:
        capacity, vmax = connection.execute(
            sa.text("SELECT nominal_capacity_ah, voltage_max_v FROM batteries")
        ).one()
        end, event_test = connection.execute(
            sa.text("SELECT t.end_unix_s, e.test_id FROM tests t JOIN events e "
                    "ON e.test_id = t.id AND e.kind = 'x'")
        ).one()
    assert (type(capacity), type(vmax), type(end), type(event_test)) == (float, float, float, int)
    assert (capacity, vmax, end, event_test) == (2.5, 3.65, 1.7e9 + 5, test_id)


def test_start_and_finish_look_up_in_slices(db: Database, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from cellbench_core.storage import lookups

    monkeypatch.setattr(lookups, "_IN_LIST_SIZE", 2)  # as if 20,000 tests started at once
    starts = [TestStart(name=f"t{n}", channel=f"slice/{n}", driver="sim", battery=None,
                        plan_name="p", plan_source="p.yaml", plan_text="", sample_period_s=1.0,
                        station="st", start_unix_s=1000.0) for n in range(5)]
    ids = db.start_tests(starts)
    db.finish_tests([TestEnd(i, "finished", "done", 2000.0) for i in ids])
    assert [(t.channel, t.status) for t in db.tests()] == [
        (f"slice/{n}", TestStatus.FINISHED) for n in range(5)]
    finished = [e.channel for e in db.events() if e.kind == "test_finished"]
    assert finished == [f"slice/{n}" for n in range(5)]


def test_start_tests_records_many_tests_channels_and_events_at_once(db: Database) -> None:
    db.add_battery("cell-a", "NMC", 2.5)
    db.ensure_channel("s1", "sim", {"index_in_driver": 0})
    starts = [TestStart(name=f"t{n}", channel=f"s{n % 3 + 1}", driver="sim",
                        battery="cell-a" if n % 2 else None, plan_name="p",
                        plan_source="p.yaml", plan_text="name: p", sample_period_s=1.0,
                        station="st", start_unix_s=1000.0 + n) for n in range(7)]
    ids = db.start_tests(starts)
    assert len(set(ids)) == 7
    records = [db.test(i) for i in ids]
    assert [(r.name, r.channel, r.battery) for r in records if r] == [
        (s.name, s.channel, s.battery) for s in starts]
    assert all(r is not None and r.status is TestStatus.RUNNING for r in records)
    events = [e for e in db.events() if e.kind == "test_started"]
    assert sorted(e.test_id for e in events) == sorted(ids)
    # Made by the database from the test rows: the same text, channel and time as each test's.
    by_id = {i: s for i, s in zip(ids, starts, strict=True)}
    assert all(e.message == f"test {e.test_id} started" and e.channel == by_id[e.test_id].channel
               and e.unix_time_s == by_id[e.test_id].start_unix_s for e in events)
    with pytest.raises(StorageError, match="no battery named 'ghost'"):
        db.start_tests([replace(starts[0], battery="ghost")])
    assert len(db.tests()) == 7  # nothing of the failed call was kept


def test_upgrade_from_0006_keeps_the_rows_and_drops_the_foreign_keys_of_0007(
        storage_url: str) -> None:
    if storage_url.startswith("sqlite"):
        Path(sa.make_url(storage_url).database or "").parent.mkdir()
    engine = sa.create_engine(storage_url)
    try:
        with engine.begin() as connection:
            config = _alembic(connection)
            command.downgrade(config, "base")  # the server databases are at the head
            command.upgrade(config, "0006")
        db = Database(storage_url, engine)
        (test_id,) = db.start_tests([TestStart(
            name="old", channel="c1", driver="sim", battery=None, plan_name="p",
            plan_source="p.yaml", plan_text="name: p", sample_period_s=1.0, station="st",
            start_unix_s=1000.0)])
        tables = ("tests", "channels", "events", "steps", "test_positions", "test_queue")
        with engine.begin() as connection:
            connection.execute(sa.insert(metadata.tables["steps"]), [{
                "test_id": test_id, "step_no": n, "step_index": n, "plan_line": 3, "cycle": 1,
                "mode": "rest", "text": "Rest", "start_seq": n * 10, "end_seq": n * 10 + 9,
                "start_test_time_s": n, "end_test_time_s": n + 1.0, "ah": 0.0, "wh": 0.0,
                "end_reason": "time", "charge_ah": 0.0, "discharge_ah": 0.0,
                "charge_wh": 0.0, "discharge_wh": 0.0, "temperature_min_c": 20.0,
                "temperature_max_c": 21.0} for n in (1, 2)])
            connection.execute(sa.insert(metadata.tables["test_positions"]).values(
                test_id=test_id, step_no=2, start_seq=10, unix_time_s=1001.0, state="{}"))
            # A queue row refers to the test: SQLite copies ``tests`` under it.
            connection.execute(sa.insert(metadata.tables["test_queue"]).values(
                channel=1, plan="name: p", status="running", created_unix_s=999.0,
                test_id=test_id))
            before = {name: connection.execute(sa.select(metadata.tables[name])).all()
                      for name in tables}

        assert upgrade(storage_url) == ("0006", _script().get_current_head())
        inspector = sa.inspect(engine)
        for name in ("events", "steps", "test_positions"):
            assert inspector.get_foreign_keys(name) == [], name
        assert [fk["referred_table"] for fk in inspector.get_foreign_keys("tests")] == [
            "batteries"]
        assert [fk["referred_table"] for fk in inspector.get_foreign_keys("test_queue")] == [
            "tests"]
        with engine.connect() as connection:
            after = {name: connection.execute(sa.select(metadata.tables[name])).all()
                     for name in tables}
        assert after == before
        assert [c.steps for c in db.cycles(test_id)] == [2]  # the view reads the new table
    finally:
        engine.dispose()

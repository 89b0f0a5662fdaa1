"""The central database's schema migrations: a fresh central is created at the newest revision
and equals the model; a central created before central migrations existed, with data, is
upgraded in place while a station keeps syncing into it, its rows intact and its new indexes
there; ``cellbench central upgrade`` does it from the command line, and ``cellbench db
upgrade`` on a central database says what to run instead."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner, Result

from cellbench_core.cli import app
from cellbench_sdk.storage import schema
from cellbench_sync_sql import central
from cellbench_sync_sql.plugin import cellbench_cli
from cellbench_sync_sql.settings import CentralSqlSettings
from cellbench_sync_sql.target import CentralSqlTarget

STATION = "lab-1"
HEAD = "c0002"
cli = CliRunner()
READ_INDEXES = {"ix_samples_origin_test_id_unix_time_s", "ix_batteries_name",
                "ix_tests_origin_battery_id", "ix_tests_status"}


def create_as_before_migrations(engine: sa.Engine) -> None:
    """What ``central.ensure_schema`` of cellbench before central migrations created: the
    tables with the events index only, and the ``cycles`` view (no version table)."""
    old = sa.MetaData()
    for table in central.metadata.sorted_tables:
        copy = table.to_metadata(old)
        for index in list(copy.indexes):
            if index.name != "ix_events_origin_test_id":
                copy.indexes.discard(index)
    with engine.begin() as connection:
        old.create_all(connection)
        connection.execute(sa.text(schema.cycles_view(connection.dialect.name,
                                                      ("origin", "test_id"))))


def differences(engine: sa.Engine) -> list[Any]:
    """How the database's tables and indexes differ from the model in central.py."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": False,  # each backend reports its own spelling of the types
            "include_name": lambda name, kind, _parent: kind != "table"
            or name != central.VERSION_TABLE})
        return list(compare_metadata(context, central.metadata))


def indexes(engine: sa.Engine) -> set[str]:
    inspector = sa.inspect(engine)
    return {index["name"] for table in ("samples", "batteries", "tests", "events")
            for index in inspector.get_indexes(table)}


def test_a_fresh_central_is_made_at_the_newest_revision_and_equals_the_model(
        central_url: str) -> None:
    engine = sa.create_engine(central_url)
    try:
        assert central.upgrade(engine) == (None, HEAD)
        assert central.upgrade(engine) == (HEAD, HEAD)
        assert differences(engine) == []
        assert indexes(engine) >= READ_INDEXES
    finally:
        engine.dispose()


@pytest.mark.server
@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
def test_stations_connecting_at_once_upgrade_one_after_the_other(central_url: str) -> None:
    engine = sa.create_engine(central_url)
    results: list[tuple[str | None, str | None]] = []
    try:
        threads = [threading.Thread(target=lambda: results.append(central.upgrade(engine)))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results, key=lambda result: result[0] or "") == [
            (None, HEAD), (HEAD, HEAD), (HEAD, HEAD)]
        assert differences(engine) == []
    finally:
        engine.dispose()


@pytest.mark.server
@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
def test_a_first_upgrade_interrupted_half_way_is_completed_by_the_next(
        central_url: str) -> None:
    """On MariaDB/MySQL every DDL statement commits on its own: a station killed during its
    first upgrade leaves some tables, and a version table without a revision."""
    engine = sa.create_engine(central_url)
    try:
        central.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP VIEW live_samples"))
            connection.execute(sa.text("DROP VIEW cycles"))
            for table in ("tests", "sync_tests", "sync_stations", "steps"):
                connection.execute(sa.text(f"DROP TABLE {table}"))
            connection.execute(sa.text(f"DELETE FROM {central.VERSION_TABLE}"))
        assert central.upgrade(engine) == (None, HEAD)
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_a_central_made_before_migrations_is_upgraded_in_place_while_a_station_syncs(
        bench: Any, central_url: str, digest: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = sa.create_engine(central_url)
    tests = bench.start(3)
    bench.write(tests, 200)
    # A station of the previous cellbench: it made the central tables the old way, and goes on
    # syncing without knowing of migrations.
    with monkeypatch.context() as patched:
        patched.setattr(central, "upgrade", create_as_before_migrations)
        old_station = CentralSqlTarget(CentralSqlSettings(url=central_url, station=STATION,
                                                          max_rows=100))
        old_station.open()
    assert central.VERSION_TABLE not in sa.inspect(engine).get_table_names()
    old_station.sync_once(bench.db)
    stop = threading.Event()
    batches: list[int] = []
    errors: list[BaseException] = []

    def keep_syncing() -> None:
        try:
            while not stop.is_set() or not batches or batches[-1] != 0:
                batches.append(old_station.sync_once(bench.db).rows)
        except BaseException as err:  # reported by the test below
            errors.append(err)

    syncing = threading.Thread(target=keep_syncing)
    syncing.start()
    try:
        bench.write(tests, 100)
        assert central.upgrade(engine) == (central.BASELINE, HEAD)
        bench.write(tests, 100)
        bench.finish(tests[:1])
    finally:
        stop.set()
        syncing.join()
    old_station.close()
    assert not errors, errors
    assert sum(batches) > 0
    new_station = CentralSqlTarget(CentralSqlSettings(url=central_url, station=STATION))
    new_station.open()  # finds the newest revision: nothing to do
    try:
        while not new_station.sync_once(bench.db).caught_up:
            pass
    finally:
        new_station.close()
    local = digest(bench.db.url)
    assert digest(central_url, STATION) == local
    assert local[("samples", tests[0])][0] == 400
    assert differences(engine) == []
    assert indexes(engine) >= READ_INDEXES
    with engine.connect() as connection:
        live = connection.execute(sa.text(
            "SELECT origin, test_id, seq FROM live_samples ORDER BY test_id")).fetchall()
    assert live == [(STATION, test_id, 400) for test_id in tests[1:]]
    engine.dispose()


def test_cellbench_central_upgrade_and_db_upgrade_on_a_central_database(tmp_path: Any) -> None:
    plugin_app = typer.Typer()  # the commands this plugin adds to `cellbench`
    cellbench_cli(plugin_app)

    def cellbench(*args: str) -> Result:
        return cli.invoke(plugin_app if args[0] == "central" else app, list(args),
                          terminal_width=500)

    url = f"sqlite:///{tmp_path / 'central.sqlite3'}"
    engine = sa.create_engine(url)
    create_as_before_migrations(engine)
    engine.dispose()
    result = cellbench("db", "upgrade", "--db", url)
    assert result.exit_code == 2
    assert f"{url} is not a station database" in result.output
    assert f"cellbench central upgrade --url {url}" in result.output
    result = cellbench("central", "upgrade", "--url", url)
    assert result.exit_code == 0, result.output
    assert f"central schema upgraded from revision {central.BASELINE} to {HEAD}" in result.output
    result = cellbench("central", "upgrade", "--url", url)
    assert f"central schema is up to date (revision {HEAD})" in result.output
    station = f"sqlite:///{tmp_path / 'station.sqlite3'}"
    assert cellbench("db", "upgrade", "--db", station).exit_code == 0
    result = cellbench("central", "upgrade", "--url", station)
    assert result.exit_code == 2
    assert "is a station database" in result.output
    result = cellbench("central", "upgrade", "--url", "not a url")
    assert result.exit_code == 2
    assert "--url 'not a url': not a SQLAlchemy database URL" in result.output

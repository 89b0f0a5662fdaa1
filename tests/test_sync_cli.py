"""``cellbench sync``: runs a sync target from the command line, and names what is wrong."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.cli.sync import parse_settings
from cellbench_core.storage import SampleRows, SampleWriter, TestStart, open_database

runner = CliRunner()


@pytest.fixture
def station_db(tmp_path: Path) -> str:
    """A station database with one running test of 100 samples."""
    url = f"sqlite:///{tmp_path / 'station.sqlite3'}"
    db = open_database(url)
    [test_id] = db.start_tests([TestStart(
        name="t", channel="sim/1", driver="sim", battery=None, plan_name="p",
        plan_source="p.yaml", plan_text="", sample_period_s=1.0, station="lab-7",
        start_unix_s=1.7e9)])
    seq = np.arange(1, 101, dtype=np.int64)
    t = np.asarray(seq * 1.0, dtype=np.float64)
    writer = SampleWriter(db)
    writer.submit(SampleRows(
        test_id=np.full(100, test_id, dtype=np.int64), seq=seq, test_time_s=t,
        unix_time_s=t, step_time_s=t, voltage_v=t, current_a=t, power_w=t, temperature_c=t,
        step_index=seq, plan_line=seq, cycle=seq, ah=t, wh=t))
    writer.close()
    db.close()
    return url


def test_sync_once_to_a_backup_file(station_db: str, tmp_path: Path) -> None:
    path = tmp_path / "backup.sqlite3"
    result = runner.invoke(app, ["sync", "--db", station_db, "--target", "sqlite-backup",
                                 "-s", f"path={path}", "--once"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM samples").fetchone() == (100,)


def test_station_file_names_the_database_and_the_station(station_db: str,
                                                         tmp_path: Path) -> None:
    station = tmp_path / "station.toml"
    station.write_text(f'[station]\nname = "lab-7"\ndatabase = "{station_db}"\n',
                       encoding="utf-8")
    central = tmp_path / "central.sqlite3"
    result = runner.invoke(app, ["sync", "--station", str(station), "--target", "central-sql",
                                 "-s", f"url=sqlite:///{central}", "--once"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(central) as connection:
        assert connection.execute(
            "SELECT origin, COUNT(*) FROM samples GROUP BY origin").fetchall() == [("lab-7", 100)]


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "ftp"], "no sync target called 'ftp'"),
    (["--target", "sqlite-backup", "-s", "paht=x.db"], "paht: Extra inputs"),
    (["--target", "sqlite-backup", "-s", "path"], "expected KEY=VALUE"),
    (["--target", "central-sql", "-s", "url=sqlite:///c.db", "-s", "max_rows=0"], "max_rows"),
])
def test_bad_arguments_are_named(station_db: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sync", "--db", station_db, "--once", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_settings_are_toml_values_or_text() -> None:
    assert parse_settings(["max_rows=500", "url=postgresql+psycopg://h/db", 'name="a b"',
                           "on=true"]) == {"max_rows": 500, "url": "postgresql+psycopg://h/db",
                                           "name": "a b", "on": True}


@pytest.mark.faults
def test_sync_refused_lists_the_rows_a_target_went_on_without(station_db: str,
                                                              tmp_path: Path) -> None:
    result = runner.invoke(app, ["sync-refused", "--db", station_db])
    assert result.exit_code == 0, result.output
    assert "No row was refused." in result.output
    path = tmp_path / "backup.sqlite3"
    sync = ["sync", "--db", station_db, "--target", "sqlite-backup", "-s", f"path={path}",
            "--once"]
    assert runner.invoke(app, sync).exit_code == 0
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON tests WHEN NEW.name = 'u' "
                           "BEGIN SELECT RAISE(ABORT, 'Time [s] is not a name :x:'); END")
    connection.close()
    with sqlite3.connect(station_db.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE tests SET name = 'u'")
    connection.close()
    result = runner.invoke(app, sync)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sync-refused", "--db", station_db, "--target", "sqlite-backup"])
    assert result.exit_code == 0, result.output
    assert "sqlite-backup" in result.output and "id=1" in result.output
    assert "Time [s] is not a" in result.output and ":x:" in result.output  # literally
    result = runner.invoke(app, ["sync-refused", "--db", station_db, "--target", "other"])
    assert "No row was refused." in result.output

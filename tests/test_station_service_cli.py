"""Station data commands: ``db upgrade``, ``battery``, ``queue`` and ``station init``, with
``--db`` and ``--station``."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.station import load_station
from cellbench_core.storage import open_database
from cellbench_core.storage.queue import QueueStatus, TestQueue

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'station.db'}"


@pytest.fixture
def plan(tmp_path: Path, shared_plan: Callable[[str], str]) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text(shared_plan("short"), encoding="utf-8")
    return path


def test_db_upgrade_creates_then_reports_up_to_date(url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    upgraded = re.search(r"upgraded from revision none to ([0-9]{4})\b", result.output)
    assert upgraded, result.output
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    assert f"up to date (revision {upgraded[1]})" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--db", "nonsense"], "'nonsense' is not a database URL; for a SQLite file write "
                          "sqlite:///nonsense"),
    (["--db", "sqlite:/abs/lab.db"], "for a SQLite file write sqlite:////abs/lab.db"),
    (["--db", "mysql+pymysql://nobody:secret@127.0.0.1:1/x"],
     "cannot open the database mysql+pymysql://nobody:***@127.0.0.1:1/x"),
    (["--station", "missing.toml"], "missing.toml: cannot read"),
])
def test_db_upgrade_names_a_bad_database(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "secret" not in result.output


def test_battery_add_list_show(url: str, tmp_path: Path) -> None:
    station = tmp_path / "lab.toml"
    station.write_text(f'[station]\ndatabase = "{url}"\n', encoding="utf-8")
    result = runner.invoke(app, [
        "battery", "add", "NMC-A", "--chemistry", "NMC", "--capacity", "2500 mAh",
        "--voltage-max", "4.2 V", "--voltage-min", "2.5 V", "--charge-current-max", "1C",
        "--discharge-current-max", "7.5 A", "--temperature-max", "60 °C",
        "--meta", "supplier=ACME", "--meta", "lot = 42", "--station", str(station)])
    assert result.exit_code == 0, result.output
    database = open_database(url)
    try:
        battery = database.battery("NMC-A")
    finally:
        database.close()
    assert battery is not None
    assert (battery.nominal_capacity_ah, battery.current_max_charge_a,
            battery.current_max_discharge_a) == (2.5, 2.5, 7.5)
    assert (battery.voltage_min_v, battery.voltage_max_v, battery.temperature_max_c) == (
        2.5, 4.2, 60.0)
    assert battery.metadata == {"supplier": "ACME", "lot": "42"}
    result = runner.invoke(app, ["battery", "list", "--db", url])
    assert result.exit_code == 0, result.output
    assert "NMC-A" in result.output and "2.5-4.2 V" in result.output
    result = runner.invoke(app, ["battery", "show", "NMC-A", "--db", url])
    assert result.exit_code == 0, result.output
    assert "meta: supplier" in result.output and "ACME" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--capacity", "2.5"], "--capacity: missing unit: expected a charge like '1.2 Ah'"),
    (["--capacity", "-1 Ah"], "--capacity: must be positive"),
    (["--capacity", "2 Ah", "--voltage-max", "4.2 A"], "--voltage-max: expected a voltage"),
    (["--capacity", "2 Ah", "--meta", "oops"], "--meta: expected key=value"),
    (["--capacity", "2 Ah", "--voltage-min", "4 V", "--voltage-max", "3 V"],
     "voltage_min_v (4.0 V) must be below voltage_max_v (3.0 V)"),
])
def test_battery_add_names_the_bad_option(url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["battery", "add", "X", "--chemistry", "LFP", *args,
                                 "--db", url])
    assert result.exit_code == 2
    assert message in result.output


def test_battery_names_are_unique_and_unknown_ones_are_named(url: str) -> None:
    args = ["battery", "add", "X", "--chemistry", "LFP", "--capacity", "3 Ah", "--db", url]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "a battery named 'X' already exists" in result.output
    result = runner.invoke(app, ["battery", "show", "Y", "--db", url])
    assert result.exit_code == 2 and "no battery called 'Y' (known: X)" in result.output


def test_queue_add_list_cancel(url: str, plan: Path) -> None:
    result = runner.invoke(app, ["queue", "add", str(plan), "--channel", "2", "--db", url])
    assert result.exit_code == 0, result.output
    assert "queued entry 1" in result.output
    result = runner.invoke(app, ["queue", "list", "--db", url])
    assert result.exit_code == 0, result.output
    assert "short.yaml" in result.output and "queued" in result.output
    result = runner.invoke(app, ["queue", "cancel", "1", "--db", url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["queue", "list", "--db", url])
    assert "Nothing queued or running" in result.output
    result = runner.invoke(app, ["queue", "list", "--all", "--db", url])
    assert "cancelled" in result.output
    result = runner.invoke(app, ["queue", "cancel", "1", "--db", url])
    assert result.exit_code == 2
    assert "queue entry 1 is cancelled, not queued" in result.output
    database = open_database(url)
    try:
        [entry] = TestQueue(database).entries()
    finally:
        database.close()
    assert entry.plan == plan.read_text(encoding="utf-8") and entry.status is QueueStatus.CANCELLED


@pytest.mark.parametrize(("args", "message"), [
    (["--battery", "nope"], "--battery: no battery called 'nope'"),
    (["--channel", "0"], "Invalid value for '--channel'"),
])
def test_queue_add_refuses_bad_arguments(url: str, plan: Path, args: list[str],
                                         message: str) -> None:
    result = runner.invoke(app, ["queue", "add", str(plan), "--channel", "1", *args,
                                 "--db", url])
    assert result.exit_code == 2
    assert message in result.output


def test_queue_add_checks_the_plan(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - Discharge at 1C\n", encoding="utf-8")
    result = runner.invoke(app, ["queue", "add", str(bad), "--channel", "1", "--db", url])
    assert result.exit_code == 2
    assert f"{bad}:3" in result.output


def test_station_init_writes_a_file_that_runs(tmp_path: Path, plan: Path) -> None:
    path = tmp_path / "lab.toml"
    db = tmp_path / "lab.db"
    result = runner.invoke(app, ["station", "init", "--channels", "3", "--db",
                                 f"sqlite:///{db}", "-o", str(path)])
    assert result.exit_code == 0, result.output
    config = load_station(path)
    assert config.station.clock == "virtual" and config.channels[0].settings["count"] == 3
    result = runner.invoke(app, ["run", str(plan), "--station", str(path), "--speed", "max"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM tests WHERE status = 'finished'"
                           ).fetchone() == (3,)
    result = runner.invoke(app, ["station", "init", "-o", str(path)])
    assert result.exit_code == 2 and "give --force" in result.output
    result = runner.invoke(app, ["station", "init", "-o", str(path), "--driver", "nope"])
    assert result.exit_code == 2 and "no channel driver 'nope'" in result.output


@pytest.mark.parametrize(("text", "message"), [
    ('clock = "fast"', "station.clock: Input should be 'real' or 'virtual'"),
    ("speed = 10", 'station.speed: speed applies to clock = "virtual" only'),
    ('clock = "virtual"\nspeed = 0', "station.speed: Input should be greater than 0"),
    ('queue_poll_interval = "0 s"', "station.queue_poll_interval: a duration must"),
])
def test_serving_keys_are_validated(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(f"[station]\n{text}\n", encoding="utf-8")
    result = runner.invoke(app, ["serve", "--station", str(path)])
    assert result.exit_code == 2
    assert re.search(rf"lab\.toml:[0-9]+: {re.escape(message)}", result.output), result.output


def test_station_clock_keys_make_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text('[station]\nclock = "virtual"\nspeed = 50\nqueue_poll_interval = "200 ms"\n',
                    encoding="utf-8")
    section = load_station(path).station
    clock = section.make_clock()
    assert clock.virtual and section.queue_poll_interval == pytest.approx(0.2)
    assert not load_station(tmp_path / "lab.toml").station.model_copy(
        update={"clock": "real", "speed": None}).make_clock().virtual

"""Device signals through whole stations: ``cellbench plan check --station`` checks a plan's
signal limits and device writes, and the station file's ``on_start`` and ``on_stop``, against
the devices the station builds (nothing opened); a station killed in a test writes ``on_stop``
when it starts again, records it with the test the crash interrupted, and writes ``on_start``
again as the test resumes."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cellbench_core.cli import app

cli = CliRunner()

RIG = """\
[[devices]]
kind = "sim"
name = "rig"
channels = "1"
{extra}
"""


def station_file(tmp_path: Path, extra: str = "", keys: str = "") -> Path:
    """A station with two simulated channels and the simulated OSI device ``rig`` on
    channel 1 (``extra``: more of its keys; ``keys``: more of ``[station]``'s)."""
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\nname = "lab"\ndatabase = "{url}"\n{keys}'
                    '[plugins]\nenable = ["sim"]\n'
                    '[[channels]]\ndriver = "sim"\nsettings = {count = 2, seed = 3}\n'
                    + RIG.format(extra=extra), encoding="utf-8")
    return path


def check(tmp_path: Path, plan: str, station: Path, *options: str) -> tuple[int, str]:
    path = tmp_path / "plan.yaml"
    path.write_text(plan, encoding="utf-8")
    result = cli.invoke(app, ["plan", "check", str(path), "--station", str(station), *options])
    return result.exit_code, " ".join(result.output.replace(f"{tmp_path}/", "").split())


@pytest.mark.parametrize(("plan", "extra", "message"), [
    ("name: t\nlimits: {rig.temperature_c: {max: 4.2 V}}\nsteps: [Rest for 1 s]\n", "",
     "plan.yaml:2: limits.rig.temperature_c: signal 'rig.temperature_c' is in '°C'; give it a "
     "bare number in '°C' or a value of its kind, not voltage"),
    ("name: t\nsteps: [{set: {rig.heater_power_w: 80 W}}, Rest for 1 s]\n", "",
     "plan.yaml:2: set rig.heater_power_w: 80 W is beyond the range of signal "
     "'rig.heater_power_w' (0..50 W)"),
    ("name: t\nlimits: {rig.pressure_kpa: {min: 90}}\nsteps: [Rest for 1 s]\n", "",
     "plan.yaml:2: limits.rig.pressure_kpa: signal 'rig.pressure_kpa' is not recorded on "
     "channel 2 (its signals: none; see [[devices]] and [[chambers]])"),
    ("name: t\nsteps: [Rest for 1 s]\n", "on_stop = {heater_w = 0}",
     "station.toml: devices[0].on_stop.heater_w: device 'rig' has no signal 'heater_w' (did you "
     "mean 'heater_power_w'?)"),
])
def test_plan_check_checks_signals_against_the_station(
        tmp_path: Path, plan: str, extra: str, message: str) -> None:
    code, output = check(tmp_path, plan, station_file(tmp_path, extra))
    assert code == 2, output
    assert message.replace("station.toml: ", "") in output


def test_plan_check_accepts_signals_that_fit(tmp_path: Path) -> None:
    plan = ("name: t\nlimits: {rig.temperature_c: {max: 40 °C, for: 5 s}, "
            "rig.pressure_kpa: {min: 90}}\nsteps:\n  - set: {rig.heater_power_w: 5000 mW}\n"
            "  - Rest for 1 s\n")
    code, output = check(tmp_path, plan, station_file(tmp_path, "on_start = "
                                                      "{heater_power_w = 5}"), "--channels", "1")
    assert code == 0, output
    assert "rig.heater_power_w: 5 W" in output


def test_a_station_killed_in_a_test_writes_on_stop_when_it_starts_again(
        tmp_path: Path, start_serving: Any, wait_for_rows: Any) -> None:
    station = station_file(tmp_path, "on_start = {heater_power_w = 20}\n"
                                     "on_stop = {heater_power_w = 0}",
                           'sample_period = "1 s"\nclock = "virtual"\nspeed = 100\n'
                           'queue_poll_interval = "0.05 s"\non_restart = "resume"\n')
    plan = tmp_path / "rest.yaml"
    plan.write_text("name: rest\nsteps: [Rest for 3 minutes]\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    assert cli.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    result = cli.invoke(app, ["queue", "add", str(plan), "--channel", "1", "--db", url])
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(url)
    process = start_serving(station)
    wait_for_rows("SELECT COUNT(*) FROM samples", engine, lambda rows: rows[0][0] > 5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with engine.connect() as connection:
        heater = connection.execute(sa.text(
            "SELECT DISTINCT value FROM sample_aux WHERE name = 'rig.heater_power_w'")).fetchall()
        running = connection.execute(sa.text("SELECT status FROM tests")).fetchall()
    assert heater == [(20.0,)]  # on_start was written before the test's first sample
    assert running == [("running",)]
    process = start_serving(station)
    wait_for_rows("SELECT status FROM tests", engine, [("finished",)])
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    with engine.connect() as connection:
        written = connection.execute(sa.text(
            "SELECT test_id, message FROM events WHERE kind = 'device_write' ORDER BY id"
        )).fetchall()
    assert written == [(1, message) for message in (
        "rig.heater_power_w = 20 W (on_start)",  # no on_stop after it: the station was killed
        "rig.heater_power_w = 0 (on_stop, as the station opened after the crash)",
        "rig.heater_power_w = 20 W (on_start)",  # resumed
        "rig.heater_power_w = 0 W (on_stop)")]


def test_a_plan_limits_and_ends_on_at_most_eight_signals(tmp_path: Path) -> None:
    limits = ", ".join(f"rig.s{n}: {{max: 1}}" for n in range(9))
    code, output = check(tmp_path, f"name: t\nlimits: {{{limits}}}\nsteps: [Rest for 1 s]\n",
                         station_file(tmp_path), "--channels", "1")
    assert code == 2
    assert "plan.yaml: the plan ends steps on and limits more than 8 different signals" in output

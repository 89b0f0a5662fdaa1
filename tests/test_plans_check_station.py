"""``cellbench plan check --station``: a plan checked against each selected channel's ranges
(drivers constructed, not opened) and a registered battery's limits, as a test start would;
misfits exit 2 naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.storage import open_database

runner = CliRunner()


@pytest.fixture
def station(tmp_path: Path) -> Path:
    """Channels 1-2 reach 10 A and 0-5 V, channel 3 only 1 A and 2-4.5 V; a 2.5 Ah battery."""
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    database = open_database(url)
    database.add_battery(name="nmc-2.5", chemistry="nmc", nominal_capacity_ah=2.5,
                         voltage_max_v=4.1, voltage_min_v=2.5, current_max_charge_a=5.0,
                         current_max_discharge_a=2.0, temperature_max_c=60.0)
    database.close()
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\nname = "lab"\ndatabase = "{url}"\n'
                    '[plugins]\nenable = ["sim"]\n'
                    '[[channels]]\ndriver = "sim"\nsettings = {count = 2}\n'
                    '[[channels]]\ndriver = "sim"\nsettings = {count = 1, current_max_a = 1.0, '
                    'voltage_min_v = 2.0, voltage_max_v = 4.5}\n', encoding="utf-8")
    return path


def check(tmp_path: Path, steps: str, *options: str) -> tuple[int, str]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: t\nsteps:\n{steps}", encoding="utf-8")
    result = runner.invoke(app, ["plan", "check", str(plan), *options])
    return result.exit_code, " ".join(result.output.replace(f"{tmp_path}/", "").split())


@pytest.mark.parametrize(("steps", "options", "message"), [
    ("  - Charge at 2 A for 1 min\n", ["--channels", "3"],
     "plan.yaml:3: 2 A is beyond channel 3's range of 1 A"),
    ("  - Hold at 4.8 V for 1 min\n", [],
     "plan.yaml:3: 4.8 V is outside channel 3's range 2..4.5 V"),
    ("  - Charge at 2C for 1 min\n", ["--channels", "1-2"],
     "plan.yaml:3: a C-rate needs the battery's capacity (channel 1;"),
    ("  - Charge at 1 A to 4.2 V until 50 mA\n", ["--channels", "1", "--battery", "nmc-2.5"],
     "plan.yaml:3: the setpoint 4.2 V is beyond the safety limit voltage_max 4.1 V "
     "(channel 1, battery nmc-2.5)"),
    ("  - Discharge at 1C for 1 min\n", ["--channels", "2", "--battery", "nmc-2.5"],
     "plan.yaml:3: the setpoint -2.5 A is beyond the safety limit current_max 2 A"),
    ("  - Rest for 1 s\n", ["--channels", "4"], "--channels: channel 4 does not exist"),
    ("  - Rest for 1 s\n", ["--battery", "lfp-1"], "--battery: no battery named 'lfp-1'"),
])
def test_check_against_channels_and_battery(
        tmp_path: Path, station: Path, steps: str, options: list[str], message: str) -> None:
    code, output = check(tmp_path, steps, "--station", str(station), *options)
    assert code == 2
    assert message in output


def test_a_plan_that_fits_prints_its_normal_form(tmp_path: Path, station: Path) -> None:
    code, output = check(tmp_path, "  - Charge at 0.2C to 4.1 V until C/20\n", "--station",
                         str(station), "--battery", "nmc-2.5")
    assert code == 0, output
    assert output.startswith("name: t")


def test_battery_needs_a_station(tmp_path: Path) -> None:
    code, output = check(tmp_path, "  - Rest for 1 s\n", "--battery", "nmc-2.5")
    assert code == 2
    assert "--battery needs --station" in output

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


CHAMBER_STATION = """\
[station]
name = "climate-lab"
database = "sqlite:///{db}"
[[channels]]
driver = "sim"
settings = {{count = 6}}
[[chambers]]
kind = "sim"
name = "oven"
channels = "1-4"
[[chambers]]
kind = "sim"
name = "fridge"
channels = "5-6"
"""


def chamber_plan(tmp_path: Path, name: str, *temperatures: str, loop: bool = False) -> Path:
    """A plan whose chamber steps ask for ``temperatures`` in order (inside a loop of two
    passes when ``loop``), each followed by a short rest."""
    steps = "".join(f"{'  ' if loop else ''}  - chamber: {t}\n{'  ' if loop else ''}    "
                    f"timeout: 2 h\n{'  ' if loop else ''}  - Rest for 1 min\n"
                    for t in temperatures)
    if loop:
        steps = "  - repeat: 2\n    steps:\n" + steps
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nsteps:\n{steps}", encoding="utf-8")
    return path


@pytest.fixture
def climate_station(tmp_path: Path) -> Path:
    """Channels 1-4 in the oven, 5-6 in the fridge."""
    path = tmp_path / "climate.toml"
    path.write_text(CHAMBER_STATION.format(db=tmp_path / "lab.db"), encoding="utf-8")
    return path


def check_plans(tmp_path: Path, station: Path, plan: Path, *options: str) -> tuple[int, str]:
    result = runner.invoke(app, ["plan", "check", str(plan), "--station", str(station),
                                 *options])
    return result.exit_code, " ".join(result.output.replace(f"{tmp_path}/", "").split())


def test_plans_asking_one_chamber_for_different_climates_at_once_are_refused(
        tmp_path: Path, climate_station: Path) -> None:
    hot = chamber_plan(tmp_path, "hot", "25 °C", "45 °C")
    cold = chamber_plan(tmp_path, "cold", "25 °C", "0 °C")
    code, output = check_plans(tmp_path, climate_station, hot, "--channels", "1-2",
                               "--alongside", f"{cold}@3-4")
    assert code == 2
    assert ("plan check: chamber 'oven': at their chamber step 2 hot.yaml:6 (channels 1,2) asks "
            "for 45 °C and cold.yaml:6 (channels 3,4) for 0 °C") in output, output


def test_plans_in_different_chambers_or_agreeing_on_their_climates_pass(
        tmp_path: Path, climate_station: Path) -> None:
    hot = chamber_plan(tmp_path, "hot", "25 °C", "45 °C")
    cold = chamber_plan(tmp_path, "cold", "25 °C", "0 °C")
    same = chamber_plan(tmp_path, "same", "25 °C", "45 °C", "60 °C")
    # cold runs in the fridge (5-6); same meets hot's climates and has one more, met alone
    code, output = check_plans(tmp_path, climate_station, hot, "--channels", "1-2",
                               "--alongside", f"{cold}@5-6", "--alongside", f"{same}@3-4")
    assert code == 0, output
    assert output.startswith("name: hot")


def test_only_the_chamber_steps_known_before_running_are_compared(
        tmp_path: Path, climate_station: Path) -> None:
    """A loop's second pass meets its chamber steps again: past the first pass the order
    depends on the run, so plans are compared over their first pass only."""
    looped = chamber_plan(tmp_path, "looped", "25 °C", "45 °C", loop=True)
    longer = chamber_plan(tmp_path, "longer", "25 °C", "45 °C", "10 °C")
    code, output = check_plans(tmp_path, climate_station, looped, "--channels", "1",
                               "--alongside", f"{longer}@2")
    assert code == 0, output
    other = chamber_plan(tmp_path, "other", "25 °C", "30 °C")
    code, output = check_plans(tmp_path, climate_station, looped, "--channels", "1",
                               "--alongside", f"{other}@2")
    assert code == 2 and "asks for 45 °C and other.yaml:6 (channels 2) for 30 °C" in output


@pytest.mark.parametrize(("alongside", "message"), [
    ("nothing", "--alongside 'nothing': expected PLAN@CHANNELS, like cold.yaml@5-8"),
    ("{plan}@9", "--alongside '{plan}@9': channel 9 does not exist"),
    ("{plan}@1", "channel 1 is given to hot.yaml and to hot.yaml (--alongside)"),
])
def test_bad_alongside_values_are_named(tmp_path: Path, climate_station: Path, alongside: str,
                                        message: str) -> None:
    hot = chamber_plan(tmp_path, "hot", "25 °C")
    code, output = check_plans(tmp_path, climate_station, hot, "--channels", "1-2",
                               "--alongside", alongside.format(plan=hot))
    assert code == 2
    assert message.format(plan="hot.yaml") in output, output

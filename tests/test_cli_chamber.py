"""``cellbench chamber status`` and ``cellbench chamber emulate`` through Typer's test runner."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.descriptors import Descriptor, Kind
from cellbench_sdk.testing import free_port

runner = CliRunner()

STATION = """\
[station]
name = "climate-lab"
database = "sqlite:///{db}"

[[channels]]
driver = "sim"
[channels.settings]
count = 4
{chambers}
"""

TWO_CHAMBERS = """
[[chambers]]
kind = "sim"
name = "oven"
channels = "1-2"
[chambers.settings]
ambient_c = 23.0

[[chambers]]
kind = "sim"
name = "fridge"
channels = "3-4"
[chambers.settings]
ambient_c = 5.0
"""


def station_file(tmp_path: Path, chambers: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(STATION.format(db=tmp_path / "station.db", chambers=chambers),
                    encoding="utf-8")
    return path


def test_status_reads_every_chamber(tmp_path: Path) -> None:
    result = runner.invoke(app, ["chamber", "status", "--station",
                                 str(station_file(tmp_path, TWO_CHAMBERS))],
                           env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in result.output.splitlines() if line.startswith("│")}
    assert rows == {"oven": ["sim", "1-2", "stopped", "23.0", "23.0", "-", "-"],
                    "fridge": ["sim", "3-4", "stopped", "5.0", "5.0", "-", "-"]}


def test_status_of_a_station_without_chambers_says_so(tmp_path: Path) -> None:
    path = station_file(tmp_path, "")
    result = runner.invoke(app, ["chamber", "status", "--station", str(path)])
    assert result.exit_code == 0
    assert "has no [[chambers]]" in " ".join(result.output.split())


def test_status_names_the_bad_setting(tmp_path: Path) -> None:
    path = station_file(tmp_path, TWO_CHAMBERS.replace("ambient_c = 5.0", "ambient_c = 'warm'"))
    result = runner.invoke(app, ["chamber", "status", "--station", str(path)])
    assert result.exit_code == 2
    assert "chambers[1].settings.ambient_c" in result.output


@pytest.mark.parametrize(("kind", "message"), [
    ("sim", "--kind: the sim chamber (plugin sim) ships no emulator"),
    ("nope", "--kind: no climate chamber called 'nope' is installed"),
])
def test_emulate_refuses_a_kind_without_an_emulator(kind: str, message: str) -> None:
    result = runner.invoke(app, ["chamber", "emulate", "--kind", kind, "--port", "10001"])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_descriptor_names_its_emulator_as_module_and_attribute() -> None:
    described = Descriptor(Kind.CLIMATE_CHAMBER, "x", "json:loads", "x",
                           emulator="json:dumps")
    assert described.load_emulator().__name__ == "dumps"
    with pytest.raises(ValueError, match="emulator of climate chamber 'x' must be 'module:attr'"):
        Descriptor(Kind.CLIMATE_CHAMBER, "x", "json:loads", "x", emulator="json.dumps")
    with pytest.raises(ValueError, match="ships no emulator"):
        Descriptor(Kind.CLIMATE_CHAMBER, "x", "json:loads", "x").load_emulator()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_status_of_emulated_chambers_and_one_that_is_not_there(
        tmp_path: Path, wait_until: Any) -> None:
    kinds = ("espec", "simserv", "binder")
    ports = {kind: free_port() for kind in (*kinds, "nothing")}
    emulators = [subprocess.Popen(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "chamber",
         "emulate", "--kind", kind,
         "--port", str(ports[kind]), "--speed", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for kind in kinds]
    try:
        for process, kind in zip(emulators, kinds, strict=True):
            wait_until(lambda kind=kind: _listening(ports[kind]), f"the {kind} emulator",
                       alive=process)
        chambers = f"""
[[chambers]]
kind = "espec"
name = "espec1"
channels = "1"
[chambers.settings]
address = "127.0.0.1:{ports["espec"]}"

[[chambers]]
kind = "simserv"
name = "weiss1"
channels = "2"
[chambers.settings]
port = {ports["simserv"]}

[[chambers]]
kind = "binder"
name = "binder1"
channels = "4"
[chambers.settings]
address = "127.0.0.1:{ports["binder"]}"

[[chambers]]
kind = "simserv"
name = "gone"
channels = "3"
[chambers.settings]
port = {ports["nothing"]}
"""
        result = runner.invoke(app, ["chamber", "status", "--station",
                                     str(station_file(tmp_path, chambers))],
                               env={"COLUMNS": "200"})
    finally:
        for process in emulators:
            process.terminate()
            process.wait(10)
    assert result.exit_code == 1, result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in result.output.splitlines() if line.startswith("│")}
    assert rows["espec1"][:3] == ["espec", "1", "stopped"]
    assert rows["weiss1"][:3] == ["simserv", "2", "stopped"]
    assert rows["binder1"][:2] == ["binder", "4"]
    assert float(rows["espec1"][3]) == pytest.approx(23.0, abs=1.0)
    assert rows["gone"][0] == "simserv" and "refused" in rows["gone"][2].lower()

"""``cellbench scpi-logger emulate``: a logger a person (or a station) reaches on loopback, and
options it refuses with an error and no traceback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cellbench_scpi_logger.cli import register
from cellbench_scpi_logger.logger import ScpiLogger
from cellbench_scpi_logger.settings import ScpiLoggerSettings
from cellbench_sdk import DeviceError, RealClock
from cellbench_sdk.testing import free_port


def invoke(*arguments: str) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: typer keeps "scpi-logger" as a group
    result = CliRunner().invoke(app, ["scpi-logger", "emulate", *arguments])
    return result.exit_code, result.output


@pytest.mark.parametrize(("arguments", "message"), [
    (("--model", "34980A"), "--model '34980A': DAQ970A or 34970A"),
    (("--slots", "20,x"), "--slots '20,x': channel counts separated by commas"),
    (("--slots", "20,20"), "--slots '20,20': three counts of 0..40 channels"),
])
def test_bad_options_are_refused(arguments: tuple[str, ...], message: str) -> None:
    code, output = invoke(*arguments)
    assert code == 1
    assert message in output.replace("\n", "")


def test_a_taken_port_is_an_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = invoke("--port", str(port))
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in output


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_emulator_serves_a_station(wait_until: Any) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "scpi-logger",
         "emulate", "--port", str(port), "--slots", "20,0,0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def logger(ch: int) -> ScpiLogger:
        return ScpiLogger(ScpiLoggerSettings.model_validate(
            {"address": f"127.0.0.1:{port}", "channels": {"t": {"ch": ch, "kind": "tc-k"}}}))

    async def run() -> float:
        in_slot_1 = logger(105)
        await in_slot_1.open(RealClock())
        value = (await in_slot_1.read())["t"].value
        await in_slot_1.close()
        with pytest.raises(DeviceError, match="no module in slot 2"):
            await logger(205).open(RealClock())
        return value

    try:
        wait_until(lambda: _listening(port), "the logger emulator", alive=process)
        assert 20 < asyncio.run(run()) < 30
    finally:
        process.terminate()
        process.wait(10)

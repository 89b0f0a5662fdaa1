"""``cellbench scpi emulate`` in a process of its own, ``cellbench scpi identify`` against it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import typer
from typer.testing import CliRunner

from cellbench_scpi.cli import register
from cellbench_sdk.testing import free_port

PATIENCE_S = 60.0
#: `cellbench` with only this plugin's commands: the same code, without importing every plugin.
SCPI_COMMANDS = ("import typer; from cellbench_scpi.cli import register; app = typer.Typer(); "
                 "register(app); app()")


def _app() -> typer.Typer:
    """The scpi commands as `cellbench` has them."""
    app = typer.Typer()
    register(app)
    return app


def _listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the emulator did not listen on {port}: {process.poll()}")


def test_identify_an_emulated_smu() -> None:
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-c", SCPI_COMMANDS, "scpi", "emulate", "--model", "smu",
         "--family", "keysight-b2900", "--port", str(port), "--capacity", "3 Ah"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _listening(port, emulator)
        result = CliRunner().invoke(_app(), ["scpi", "identify",
                                          f"TCPIP::127.0.0.1::{port}::SOCKET"])
    finally:
        emulator.terminate()
        out, _ = emulator.communicate(timeout=PATIENCE_S)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "*IDN?: Keysight Technologies,B2901A,MY51140102,3.4.2011.5100",
        "driver: scpi-smu",
        "command set: keysight-b2900 (Keysight B2900-family precision SMU "
        "(B2901A/B2902A/B2911A/B2912A), channel 1)",
        "range: ±0.1 A up to ±210 V", "range: ±1 A up to ±21 V", "range: ±1.5 A up to ±6 V",
        "communication watchdog: no",
    ]
    assert f"on TCPIP::127.0.0.1::{port}::SOCKET" in " ".join(out.split())


def test_identify_refuses_a_bad_resource_and_says_when_nothing_answers() -> None:
    runner = CliRunner()
    bad = runner.invoke(_app(), ["scpi", "identify", "10.0.0.5:5025"])
    assert bad.exit_code == 2
    assert "resource '10.0.0.5:5025' is not one of the forms" in bad.output
    nobody = runner.invoke(_app(), ["scpi", "identify",
                                 f"TCPIP::127.0.0.1::{free_port()}::SOCKET", "--timeout", "0.5"])
    assert nobody.exit_code == 1
    assert "Connection refused" in nobody.output

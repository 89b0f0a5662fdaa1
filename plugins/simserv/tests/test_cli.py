"""``cellbench simserv emulate`` refuses what it cannot do, with an error and no traceback."""

import socket

import typer
from typer.testing import CliRunner

from cellbench_simserv.cli import register


def invoke(*arguments: str) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: typer keeps "simserv" as a group
    result = CliRunner().invoke(app, ["simserv", "emulate", *arguments])
    return result.exit_code, result.output


def test_taken_port_is_an_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = invoke("--port", str(port))
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in output


def test_speed_must_be_positive() -> None:
    code, output = invoke("--speed", "0")
    assert code == 2
    assert "--speed must be positive, not 0" in output

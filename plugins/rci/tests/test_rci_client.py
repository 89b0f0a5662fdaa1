"""The client library and ``cellbench rci`` against a real station: ``cellbench serve`` in a
subprocess serving simulated channels and an rci interface on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cellbench_rci.cli import register
from cellbench_rci.client import AsyncRciClient, RciClient, RciError, tls_context
from cellbench_rci.protocol import ErrorCode

runner = CliRunner()


def test_replies_and_records(station: Any) -> None:
    with RciClient.connect(port=station.port) as rci:
        assert rci.command("PING").payload == "PONG"
        assert rci.command("idn?").payload.startswith("cellbench,rci-test,")
        records = rci.command("STATE? 1-3").records
        assert [r[0] for r in records] == ["1", "2", "3"]
        assert all(len(r) == 11 for r in records)
        channels = rci.command("CHANNELS?").records
        assert channels[0] == [str(station.channels)]
        assert [r[1] for r in channels[1:]] == ["sim"] * station.channels


def test_err_replies_raise_with_code_and_message(station: Any) -> None:
    with RciClient.connect(port=station.port) as rci:
        cases = [("FROB 1", ErrorCode.UNKNOWN_COMMAND), ("STATE? 99", ErrorCode.NO_SUCH_CHANNEL),
                 ("STATE? 1-", ErrorCode.BAD_CHANNEL), ("STOP 2", ErrorCode.CHANNEL_IDLE),
                 ("START 2 missing-plan", ErrorCode.NO_SUCH_PLAN)]
        for command, code in cases:
            with pytest.raises(RciError) as caught:
                rci.command(command)
            assert caught.value.code == code, command
            assert caught.value.message
        assert rci.command("PING").payload == "PONG"  # an ERR never ends the connection


def test_control_round_trip(station: Any) -> None:
    with RciClient.connect(port=station.port) as rci:
        test_id = int(rci.command("START 2 resting").payload)
        state = rci.command("STATE? 2").records[0]
        assert state[1:3] == ["running", str(test_id)]
        rci.command("PAUSE 2")
        assert rci.command("STATE? 2").records[0][1] == "paused"
        with pytest.raises(RciError) as caught:
            rci.command("PAUSE 2")
        assert caught.value.code == ErrorCode.ALREADY_PAUSED
        rci.command("RESUME 2")
        rci.command("STOP 2")
        station.wait_until(rci, "STATE? 2", lambda r: r[0][1] == "idle")


def test_pushes_never_mix_with_replies(station: Any) -> None:
    with RciClient.connect(port=station.port) as rci:
        test_id = rci.command("START 3 resting").payload
        rci.command("SUBSCRIBE 3")
        for _ in range(200):  # commands while samples stream in
            assert rci.command("PING").payload == "PONG"
        pushes = rci.pushes(timeout=30)
        samples = [next(pushes).split() for _ in range(5)]
        rci.command("STOP 3")
    assert all(s[0] == "*SAMPLE" and s[1] == "3" and s[2] == test_id for s in samples)
    seqs = [int(s[3]) for s in samples]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_the_async_client_matches_pipelined_replies_in_order(station: Any) -> None:
    pushed: list[str] = []

    async def main() -> None:
        async with await AsyncRciClient.connect(port=station.port,
                                                on_push=pushed.append) as rci:
            test_id = (await rci.command("START 4 resting")).payload
            await rci.command("SUBSCRIBE 4")
            states = await asyncio.gather(*(rci.command(f"STATE? {n % 4 + 1}")
                                            for n in range(400)))
            assert [s.records[0][0] for s in states] == [str(n % 4 + 1) for n in range(400)]
            with pytest.raises(RciError) as caught:
                await rci.command("STATE? 0")
            assert caught.value.code == ErrorCode.NO_SUCH_CHANNEL
            while len(pushed) < 3:
                await asyncio.sleep(0.05)
            await rci.command("STOP 4")
            assert all(line.split()[:3] == ["*SAMPLE", "4", test_id] for line in pushed)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_quit_ends_the_connection(station: Any) -> None:
    with RciClient.connect(port=station.port) as rci:
        assert rci.command("QUIT").payload == "BYE"
        with pytest.raises(ConnectionError):
            rci.command("PING")


def test_tls_with_client_certificates(tls_station: Any) -> None:
    files = tls_station.files
    context = tls_context(files / "ca.pem", files / "client.pem", files / "client.key")
    with RciClient.connect(port=tls_station.port, tls=context) as rci:
        assert rci.command("PING").payload == "PONG"
        rci.command("START 1 resting")  # cert_roles makes the certificate an operator
        rci.command("STOP 1")
    without_cert = tls_context(files / "ca.pem")
    with (pytest.raises((OSError, ConnectionError)),
          RciClient.connect(port=tls_station.port, tls=without_cert, timeout=10) as rci):
        rci.command("PING")  # TLS 1.3: the server's refusal arrives after the handshake


def test_tokens_and_roles(token_station: Any) -> None:
    with RciClient.connect(port=token_station.port) as rci:
        with pytest.raises(RciError) as caught:
            rci.command("STATE? 1")
        assert caught.value.code == ErrorCode.AUTH_REQUIRED
    with RciClient.connect(port=token_station.port, token="viewer-token-1") as rci:
        assert rci.role == "viewer"
        rci.command("STATE? 1")
        with pytest.raises(RciError) as caught:
            rci.command("START 1 resting")
        assert caught.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(RciError) as caught:
        RciClient.connect(port=token_station.port, token="wrong")
    assert caught.value.code == ErrorCode.AUTH_FAILED


# --- cellbench rci ---------------------------------------------------------------------

@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """cellbench"""

    register(app)
    return app


def test_cli_one_shot_prints_a_table(app: typer.Typer, station: Any) -> None:
    result = runner.invoke(app, ["rci", "--port", str(station.port), "STATE?", "1-2"])
    assert result.exit_code == 0, result.output
    assert "channel" in result.output and "state" in result.output
    assert "idle" in result.output or "running" in result.output
    result = runner.invoke(app, ["rci", "--port", str(station.port), "PING"])
    assert result.output == "PONG\n"


def test_cli_one_shot_err_exits_1_with_code_and_message(app: typer.Typer,
                                                         station: Any) -> None:
    result = runner.invoke(app, ["rci", "--port", str(station.port), "STATE?", "42"])
    assert result.exit_code == 1
    assert "STATE? 42: ERR 30" in result.output


def test_cli_interactive(app: typer.Typer, station: Any) -> None:
    result = runner.invoke(app, ["rci", "--port", str(station.port)],
                           input="PING\nFROB\n\nstate? 1\nQUIT\nPING\n")
    assert result.exit_code == 0, result.output
    assert "PONG" in result.output
    assert "ERR 11" in result.output
    assert "BYE" in result.output
    assert result.output.count("PONG") == 1  # nothing is sent after QUIT


def test_cli_interactive_ends_at_end_of_input(app: typer.Typer, station: Any) -> None:
    result = runner.invoke(app, ["rci", "--port", str(station.port)], input="IDN?\n")
    assert result.exit_code == 0, result.output
    assert "cellbench,rci-test," in result.output


def test_cli_token_from_the_environment(app: typer.Typer, token_station: Any) -> None:
    port = str(token_station.port)
    result = runner.invoke(app, ["rci", "--port", port, "STATE?", "1"],
                           env={"CELLBENCH_RCI_TOKEN": "viewer-token-1"})
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["rci", "--port", port, "STATE?", "1"],
                           env={"CELLBENCH_RCI_TOKEN": "nope"})
    assert result.exit_code == 1
    assert "ERR 51" in result.output


def test_cli_subscribe_streams_samples_until_ctrl_c(station: Any) -> None:
    with RciClient.connect(port=station.port) as rci:
        rci.command("START 1 resting")
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", "from cellbench_core.cli import main; main()", "rci",
                 "--port", str(station.port), "SUBSCRIBE", "1"],
                stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 0
        finally:
            rci.command("STOP 1")
    assert lines[0] == "OK\n"
    assert all(line.startswith("*SAMPLE 1 ") for line in lines[1:])


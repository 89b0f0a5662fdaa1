"""The client library and ``cellbench rci`` byte for byte against a scripted rci peer on
loopback (the SDK's ScriptedPeer): reply matching, ERR mapping, pushed lines, the server's
parting errors, timeouts, tokens and TLS with client certificates."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme
import typer
from typer.testing import CliRunner

from cellbench_rci.client import AsyncRciClient, ErrorCode, RciClient, RciError, tls_context
from cellbench_sdk.testing import HANG_UP, HangUp, ScriptedPeer

Script = Sequence[tuple[bytes, bytes | HangUp]]
SAMPLE = b"*SAMPLE 2 17 5 4 3.71 1.25 25.1 1 1 0.0014\n"
runner = CliRunner()


@contextmanager
def peer(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[ScriptedPeer]:
    """``script`` served on its own thread, for the blocking client; a deviation from it
    fails the test when the block ends."""
    ready = threading.Event()
    held: list[ScriptedPeer] = []
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    done = asyncio.Event()

    async def serve() -> None:
        async with ScriptedPeer(script, tls=tls) as scripted:
            held.append(scripted)
            ready.set()
            await done.wait()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as err:  # the script's verdict, re-raised on the test's thread
            failure.append(err)
        finally:
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield held[0]
    finally:
        loop.call_soon_threadsafe(done.set)
        thread.join(30)
        loop.close()
    if failure:
        raise failure[0]


def test_replies_match_commands_in_order() -> None:
    with peer([(b"PING\n", b"OK PONG\n"), (b"STOP 3\n", b"OK\n"),
               (b"STATE? 1-2\n", b"OK 1,idle,-,0,0,nan,0,nan,0,0,0;2,running,7,1,1,3.7,1.25,"
                                 b"25,0.1,0.4,12\n")]) as p, \
            RciClient.connect(port=p.port) as rci:
        assert rci.command("PING").payload == "PONG"
        assert rci.command("STOP 3").payload == ""
        records = rci.command("STATE? 1-2").records
        assert [r[:3] for r in records] == [["1", "idle", "-"], ["2", "running", "7"]]


def test_err_lines_raise_with_code_message_and_command() -> None:
    with peer([(b"STOP 9\n", b"ERR 30 channel 9: no such channel\n"),
               (b"FROB\n", b"ERR 11 unknown command FROB\n"),
               (b"PING\n", b"OK PONG\n")]) as p, RciClient.connect(port=p.port) as rci:
        with pytest.raises(RciError) as caught:
            rci.command("STOP 9")
        assert (caught.value.code, caught.value.message) == (ErrorCode.NO_SUCH_CHANNEL,
                                                             "channel 9: no such channel")
        with pytest.raises(RciError) as caught:
            rci.command("FROB")
        assert caught.value.code == ErrorCode.UNKNOWN_COMMAND
        assert rci.command("PING").payload == "PONG"  # the connection goes on


def test_pushes_split_anywhere_never_reach_a_command() -> None:
    # The peer pushes samples before and after the reply, one line cut across two writes.
    with peer([(b"SUBSCRIBE 2\n", b"OK\n" + SAMPLE + SAMPLE[:9]),
               (b"PING\n", SAMPLE[9:] + b"OK PONG\n" + SAMPLE)]) as p, \
            RciClient.connect(port=p.port) as rci:
        assert rci.command("SUBSCRIBE 2").payload == ""
        assert rci.command("PING").payload == "PONG"
        pushes = rci.pushes(timeout=30)
        assert [next(pushes) for _ in range(3)] == [SAMPLE.decode().strip()] * 3


def test_pushes_go_to_the_callback() -> None:
    got: list[str] = []
    with peer([(b"SUBSCRIBE 2\n", b"OK\n" + SAMPLE), (b"PING\n", b"OK PONG\n")]) as p, \
            RciClient.connect(port=p.port, on_push=got.append) as rci:
        rci.command("SUBSCRIBE 2")
        rci.command("PING")  # its reply comes after the push: the push was delivered first
        assert got == [SAMPLE.decode().strip()]
        with pytest.raises(RuntimeError, match="on_push"):
            next(rci.pushes())


def test_the_servers_parting_error_reaches_the_next_command() -> None:
    """A server over its connection limit answers ERR 61 at once and closes."""
    with peer([(b"", b"ERR 61 too many connections\n"), (b"", HANG_UP)]) as p, \
            RciClient.connect(port=p.port) as rci:
        with pytest.raises(RciError) as caught:
            rci.command("PING")
        assert caught.value.code == ErrorCode.TOO_MANY_CONNECTIONS
        with pytest.raises(ConnectionError):
            rci.command("PING")


def test_a_closed_connection_fails_the_waiting_command() -> None:
    with peer([(b"QUIT\n", b"OK BYE\n"), (b"", HANG_UP)]) as p, \
            RciClient.connect(port=p.port) as rci:
        assert rci.command("QUIT").payload == "BYE"
        with pytest.raises(ConnectionError, match="PING: the rci server closed"):
            rci.command("PING")
        assert rci.closed


def test_a_reply_that_does_not_come_times_out_and_closes() -> None:
    with peer([(b"STATE? 1\n", b"")]) as p, \
            RciClient.connect(port=p.port, timeout=0.5) as rci:
        with pytest.raises(TimeoutError, match=r"STATE\? 1: no reply within 0.5 s"):
            rci.command("STATE? 1")
        assert rci.closed
        with pytest.raises(ConnectionError):
            rci.command("PING")


def test_a_command_that_is_no_line_of_ascii_is_not_sent() -> None:
    with peer([(b"PING\n", b"OK PONG\n")]) as p, RciClient.connect(port=p.port) as rci:
        for bad in ("START 1 plän", "STOP 1\nSTOP 2"):
            with pytest.raises(ValueError, match="only printable ASCII on one line"):
                rci.command(bad)
        assert rci.command("PING").payload == "PONG"


def test_a_token_is_sent_as_auth_and_the_role_kept() -> None:
    with peer([(b"AUTH s3cret\n", b"OK viewer\n"), (b"PING\n", b"OK PONG\n")]) as p, \
            RciClient.connect(port=p.port, token="s3cret") as rci:
        assert rci.role == "viewer"
        rci.command("PING")
    with peer([(b"AUTH wrong\n", b"ERR 51 authentication failed\n")]) as p, \
            pytest.raises(RciError) as caught:
        RciClient.connect(port=p.port, token="wrong")
    assert caught.value.code == ErrorCode.AUTH_FAILED


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """A CA and, in a folder: ca.pem, a client certificate client.pem and its key client.key."""
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(folder / "ca.pem")
    client = ca.issue_cert("lims@example.org", common_name="lims")
    client.cert_chain_pems[0].write_to_path(folder / "client.pem")
    client.private_key_pem.write_to_path(folder / "client.key")
    return ca, folder


def server_context(ca: trustme.CA, client_ca: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if client_ca:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_tls_with_and_without_a_client_certificate(
        certificates: tuple[trustme.CA, Path]) -> None:
    ca, files = certificates
    with peer([(b"IDN?\n", b"OK cellbench,lab-1,0.1.0\n")], server_context(ca, False)) as p, \
            RciClient.connect(port=p.port, tls=tls_context(files / "ca.pem")) as rci:
        assert rci.command("IDN?").payload == "cellbench,lab-1,0.1.0"
    with peer([(b"IDN?\n", b"OK cellbench,lab-1,0.1.0\n")], server_context(ca, True)) as p:
        with RciClient.connect(port=p.port, tls=tls_context(
                files / "ca.pem", files / "client.pem", files / "client.key")) as rci:
            assert rci.command("IDN?").payload == "cellbench,lab-1,0.1.0"
        # Without a certificate the server refuses: at the handshake or (TLS 1.3) at the
        # first read.
        with (pytest.raises(OSError),
              RciClient.connect(port=p.port, tls=tls_context(files / "ca.pem")) as rci):
            rci.command("IDN?")


def test_a_server_certificate_from_another_ca_is_refused(
        certificates: tuple[trustme.CA, Path]) -> None:
    _, files = certificates
    with peer([], server_context(trustme.CA(), False)) as p, \
            pytest.raises(ssl.SSLCertVerificationError):
        RciClient.connect(port=p.port, tls=tls_context(files / "ca.pem"))


# --- the asyncio client -------------------------------------------------------------------

def test_async_pipelined_commands_get_their_own_replies() -> None:
    async def main() -> None:
        script = [(b"STATE? 1\nSTATE? 2\nSTOP 9\nPING\n",
                   b"OK 1,idle\n" + SAMPLE + b"OK 2,running\nERR 30 channel 9: no such channel"
                   b"\nOK PONG\n")]
        async with ScriptedPeer(script) as p, \
                await AsyncRciClient.connect(port=p.port) as rci:
            results = await asyncio.gather(
                rci.command("STATE? 1"), rci.command("STATE? 2"), rci.command("STOP 9"),
                rci.command("PING"), return_exceptions=True)
            assert [getattr(r, "payload", None) for r in results] == [
                "1,idle", "2,running", None, "PONG"]
            assert isinstance(results[2], RciError)
            assert results[2].code == ErrorCode.NO_SUCH_CHANNEL
            pushes = rci.pushes()
            assert await anext(pushes) == SAMPLE.decode().strip()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_async_parting_error_timeout_and_closed_connection() -> None:
    async def main() -> None:
        async with ScriptedPeer([(b"", b"ERR 62 idle timeout\n"), (b"", HANG_UP)]) as p, \
                await AsyncRciClient.connect(port=p.port) as rci:
            await asyncio.sleep(0.1)
            with pytest.raises(RciError) as caught:
                await rci.command("PING")
            assert caught.value.code == ErrorCode.IDLE_TIMEOUT
        async with ScriptedPeer([(b"PING\n", b"")]) as p, \
                await AsyncRciClient.connect(port=p.port, timeout=0.5) as rci:
            with pytest.raises(TimeoutError, match="PING: no reply within 0.5 s"):
                await rci.command("PING")
            assert rci.closed
        async with ScriptedPeer([(b"QUIT\n", b"OK BYE\n"), (b"", HANG_UP)]) as p, \
                await AsyncRciClient.connect(port=p.port) as rci:
            assert (await rci.command("QUIT")).payload == "BYE"
            await asyncio.sleep(0.1)
            with pytest.raises(ConnectionError):
                await rci.command("PING")

    asyncio.run(asyncio.wait_for(main(), 60))


# --- cellbench rci ------------------------------------------------------------------------

def test_cli_prints_the_payload_or_ok(app: typer.Typer) -> None:
    with peer([(b"IDN?\n", b"OK cellbench,lab-1,0.1.0\n"), (b"STOP 3\n", b"OK\n")]) as p:
        result = runner.invoke(app, ["rci", "--port", str(p.port), "IDN?"])
        assert (result.exit_code, result.output) == (0, "cellbench,lab-1,0.1.0\n")
        result = runner.invoke(app, ["rci", "--port", str(p.port), "STOP", "3"])
        assert (result.exit_code, result.output) == (0, "OK\n")


def test_cli_prints_listings_as_tables(app: typer.Typer) -> None:
    with peer([(b"STATE? 1-2\n", b"OK 1,idle,-,0,0,nan,0,nan,0,0,0;"
                                  b"2,running,17,3,1,3.712,1.25,25,0.5,1.9,1800\n"),
               (b"QUEUE?\n", b"OK\n"),
               (b"CHANNELS?\n", b"OK 2;1,sim,2.5,4.2,5;2,sim,2.5,4.2,5\n"),
               (b"BATTERY? cell-A\n", b"OK name=cell-A,chemistry=NMC,capacity_ah=2.5\n")]) as p:
        port = str(p.port)
        state = runner.invoke(app, ["rci", "--port", port, "STATE?", "1-2"])
        queue = runner.invoke(app, ["rci", "--port", port, "QUEUE?"])
        channels = runner.invoke(app, ["rci", "--port", port, "CHANNELS?"])
        battery = runner.invoke(app, ["rci", "--port", port, "BATTERY?", "cell-A"])
    assert state.exit_code == 0, state.output
    table = [line.split() for line in state.output.splitlines()]
    assert table[0] == ["state"]
    assert ["ch", "state", "test", "step", "cycle", "U/V", "I/A", "T/°C", "Ah", "Wh",
            "time/s"] in table
    assert table[-3:-1] == [["1", "idle", "-", "0", "0", "nan", "0.000", "nan", "0.0000",
                             "0.000", "0"],
                            ["2", "running", "17", "3", "1", "3.712", "1.250", "25.0", "0.5000",
                             "1.900", "1800"]]
    assert queue.output == "(queue: none)\n"
    assert "channels (2)" in channels.output and channels.output.count("sim") == 2
    assert "chemistry" in battery.output and "NMC" in battery.output


def test_cli_err_exits_1_with_code_and_message_on_stderr(app: typer.Typer) -> None:
    with peer([(b"RESUME 2\n", b"ERR 33 channel 2: not paused\n")]) as p:
        result = runner.invoke(app, ["rci", "--port", str(p.port), "RESUME", "2"])
    assert result.exit_code == 1
    assert "RESUME 2: ERR 33 channel 2: not paused" in result.output


def test_cli_sends_the_token_from_the_environment(app: typer.Typer) -> None:
    with peer([(b"AUTH t0ken\n", b"OK operator\n"), (b"PING\n", b"OK PONG\n"),
               (b"AUTH bad\n", b"ERR 51 authentication failed\n"), (b"", HANG_UP)]) as p:
        result = runner.invoke(app, ["rci", "--port", str(p.port), "PING"],
                               env={"CELLBENCH_RCI_TOKEN": "t0ken"})
        assert (result.exit_code, result.output) == (0, "PONG\n")
        result = runner.invoke(app, ["rci", "--port", str(p.port), "PING"],
                               env={"CELLBENCH_RCI_TOKEN": "bad"})
    assert result.exit_code == 1
    assert "AUTH: ERR 51 authentication failed" in result.output
    assert "bad" not in result.output.replace("authentication", "")  # the token is not shown


def test_cli_interactive_session(app: typer.Typer) -> None:
    script = [(b"PING\n", b"OK PONG\n"),
              (b"FROB\n", b"ERR 11 unknown command FROB\n"),
              (b"SUBSCRIBE 2\n", b"OK\n" + SAMPLE),
              (b"STATE? 2\n", b"OK 2,running,17,3,1,3.7,1.25,25,0.5,1.9,1800\n"),
              (b"QUIT\n", b"OK BYE\n"), (b"", HANG_UP)]
    with peer(script) as p:
        result = runner.invoke(app, ["rci", "--port", str(p.port), "--timeout", "30"],
                               input="PING\nFROB\n\nSUBSCRIBE 2\nSTATE? 2\nQUIT\nPING\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == ["PONG", "ERR 11 unknown command FROB", "OK"]
    assert SAMPLE.decode().strip() in lines  # printed as it came
    assert "BYE" in lines  # and nothing was sent after QUIT (the script ends there)


def test_cli_interactive_ends_at_end_of_input(app: typer.Typer) -> None:
    with peer([(b"IDN?\n", b"OK cellbench,lab-1,0.1.0\n")]) as p:
        result = runner.invoke(app, ["rci", "--port", str(p.port)], input="IDN?\n")
    assert (result.exit_code, result.output) == (0, "cellbench,lab-1,0.1.0\n")


def test_cli_connection_lost_during_the_session_exits_2(app: typer.Typer) -> None:
    with peer([(b"PING\n", HANG_UP)]) as p:
        result = runner.invoke(app, ["rci", "--port", str(p.port)], input="PING\nPING\n")
    assert result.exit_code == 2
    assert "PING: the rci server closed the connection" in result.output


def test_a_line_that_is_no_reply_ends_the_connection() -> None:
    """A peer that is no rci server (or out of step) cannot have its lines taken as replies."""
    with peer([(b"PING\n", b"HELLO\n")]) as p, RciClient.connect(port=p.port) as rci:
        with pytest.raises(ConnectionError, match="PING: not an rci reply line: 'HELLO'"):
            rci.command("PING")
        assert rci.closed


def test_state_of_all_channels_fits_80_columns_with_rounded_values(
        cellbench: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """``cellbench rci STATE? ALL`` on an 80-column terminal keeps every channel's number and
    whole state, and shows what the readings resolve, not six significant digits."""
    records = b";".join(
        b"%d,%s,%d,12,345,3.71234,-1.24999,25.0312,-1.23456,-4.56789,123456.7"
        % (n, state, 1000 + n) for n, state in ((1, b"running"), (12, b"paused")))
    with peer([(b"STATE? ALL\n", b"OK " + records + b"\n")]) as p:
        result = cellbench("rci", "--port", str(p.port), "STATE?", "ALL", columns=80)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()
            if line.strip()[:2] in ("1 ", "12")]
    assert rows == [
        ["1", "running", "1001", "12", "345", "3.712", "-1.250", "25.0", "-1.2346", "-4.568",
         "123457"],
        ["12", "paused", "1012", "12", "345", "3.712", "-1.250", "25.0", "-1.2346", "-4.568",
         "123457"]]
    assert max(len(line) for line in result.stdout.splitlines()) <= 80

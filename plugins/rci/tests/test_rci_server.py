"""The rci interface of a real serving station (simulated channels, SQLite), driven by real TCP,
TLS and serial clients on this machine: every command, every limit, and bad input that changes
nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbench_core.plugins import PluginManager
from cellbench_core.station import Station, StationError, station_from_dict
from cellbench_core.storage import Database
from cellbench_rci.client import AsyncRciClient, RciClient, RciError, tls_context
from cellbench_rci.commands import Role, Session
from cellbench_rci.interface import RciSettings
from cellbench_rci.protocol import ErrorCode
from cellbench_sdk.control import StationControl
from cellbench_sdk.testing import InterfaceContract

CHARGE = """\
name: charge
capacity: 2.5 Ah
steps:
  - Charge at 0.5C for 10 hours
  - Rest for 10 hours
"""
BROKEN = """\
name: broken
steps:
  - Charge at 1 A for 1 minute
    until: voltage >= 4.2 V
"""
PATIENCE_S = 30.0


@pytest.fixture
def station_dir(tmp_path: Path) -> Path:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "charge.yaml").write_text(CHARGE, encoding="utf-8")
    (tmp_path / "plans" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    return tmp_path


@pytest.fixture
def read_until(wait_until: Callable[..., Any]) -> Callable[..., bytes]:
    """``read_until(read, what, check)``: the chunks ``read()`` returns, joined, once ``check``
    accepts them."""

    def read_all(read: Callable[[], bytes], what: str, check: Callable[[bytes], object]
                 ) -> bytes:
        data = bytearray()

        def more() -> bytes:
            data.extend(read())
            return bytes(data)

        return wait_until(more, what, check=check, interval=0)

    return read_all


def err(client: RciClient, line: str) -> RciError:
    with pytest.raises(RciError) as caught:
        client.command(line)
    return caught.value


def test_a_session_drives_a_channel_through_its_states(serve: Any, db: Database,
                                                       wait_until: Any) -> None:
    with serve() as station, station.client() as rci:
        assert rci.command("PING").payload == "PONG"
        assert rci.command("idn?").payload == "cellbench,rig,1.2.3"
        channels = rci.command("CHANNELS?").records
        assert channels[0] == ["4"] and channels[1] == ["1", "sim", "0", "5", "10"]
        assert [r[:3] for r in rci.command("STATE? ALL").records] == [
            [str(n), "idle", "-"] for n in range(1, 5)]
        test_id = int(rci.command("START 1 charge").payload)
        assert err(rci, "START 1 charge").code is ErrorCode.CHANNEL_BUSY
        record = rci.command("STATE? 1").records[0]
        assert record[:4] == ["1", "running", str(test_id), "1"]
        assert rci.command("STEP? 1").payload == "1 Charge at 0.5C for 10 hours"
        rci.command("PAUSE 1")
        assert err(rci, "PAUSE 1").code is ErrorCode.ALREADY_PAUSED
        assert rci.command("STATE? 1").records[0][1] == "paused"
        rci.command("RESUME 1")
        assert err(rci, "RESUME 1").code is ErrorCode.NOT_PAUSED
        rci.command("SUBSCRIBE 1")
        pushed = [line for _, line in zip(range(3), rci.pushes(timeout=PATIENCE_S),
                                          strict=False)]
        assert len(pushed) == 3
        seqs = []
        for line in pushed:
            words = line.split()
            assert words[:3] == ["*SAMPLE", "1", str(test_id)] and len(words) == 11
            seqs.append(int(words[3]))
        assert seqs == list(range(seqs[0], seqs[0] + 3))
        rci.command("UNSUBSCRIBE 1")
        samples = wait_until(lambda: rci.command("SAMPLES? 1 5").records, "five samples",
                             check=lambda records: len(records) >= 5)
        assert len(samples) == 5 and all(s[0] == str(test_id) for s in samples)
        assert [int(s[1]) for s in samples] == sorted(int(s[1]) for s in samples)
        rci.command("NEXT 1")
        wait_until(lambda: rci.command("STEP? 1").payload, "step 2",
                   check=lambda step: step.split()[0] == "2")
        rci.command("STOP 1")
        wait_until(lambda: rci.command("STATE? 1").records[0], "channel 1 to be idle",
                   check=lambda state: state[1] == "idle")
        assert err(rci, "STOP 1").code is ErrorCode.CHANNEL_IDLE
        assert rci.command("QUIT").payload == "BYE"
    events = [e.message for e in db.events(test_id) if e.kind == "control"]
    assert len(events) == 5 and all(e.startswith("tcp:127.0.0.1:") for e in events)
    assert [e.split(": ", 1)[1] for e in events] == [
        f"START 1 charge: test {test_id}", "PAUSE 1", "RESUME 1", "NEXT 1", "STOP 1"]
    assert db.test(test_id).end_reason.startswith("stopped by tcp:127.0.0.1:")


def test_batteries_and_the_queue(serve: Any, db: Database, wait_until: Any) -> None:
    with serve() as station, station.client() as rci:
        assert rci.command("BATTERY ADD cell-1 NMC 2.5Ah vmax=4.2V vmin=2.5 icharge=2A "
                           "IDISCHARGE=-5 tmax=55").payload == "cell-1"
        assert err(rci, "BATTERY ADD cell-1 LFP 1").code is ErrorCode.ALREADY_EXISTS
        assert rci.command("BATTERY?").records == [["cell-1", "NMC", "2.5"]]
        one = dict(f.split("=") for f in rci.command("BATTERY? cell-1").records[0])
        assert one["voltage_max_v"] == "4.2" and one["current_max_discharge_a"] == "5"
        assert one["nominal_voltage_v"] == "-"
        assert err(rci, "BATTERY? nobody").code is ErrorCode.NO_SUCH_BATTERY
        entry = int(rci.command("QUEUE ADD 2 charge cell-1").payload)
        queued = rci.command("QUEUE?").records
        assert queued[0][0:2] == [str(entry), "2"] and queued[0][3] == "cell-1"
        assert queued[0][2].endswith("charge.yaml")
        assert err(rci, "QUEUE ADD 2 nothing").code is ErrorCode.NO_SUCH_PLAN
        assert err(rci, "QUEUE ADD 2 charge ghost").code is ErrorCode.NO_SUCH_BATTERY
        assert err(rci, "QUEUE CANCEL 999").code is ErrorCode.NO_SUCH_ENTRY
        wait_until(lambda: rci.command("QUEUE?").records[0], "the entry to run",
                   check=lambda entry: entry[4] == "running")
        assert err(rci, f"QUEUE CANCEL {entry}").code is ErrorCode.NOT_CANCELLABLE
        second = int(rci.command("QUEUE ADD 2 charge").payload)
        rci.command(f"QUEUE CANCEL {second}")
        assert rci.command("QUEUE?").records[1][4] == "cancelled"
        broken = err(rci, "START 3 broken")
        assert broken.code is ErrorCode.PLAN_INVALID and "broken.yaml:4" in broken.message
    assert [b.name for b in db.batteries()] == ["cell-1"]


BAD_LINES = [
    (b"\x01PING", ErrorCode.SYNTAX),
    (b"STAT\xc3\xa9? 1", ErrorCode.SYNTAX),
    (b"   ", ErrorCode.SYNTAX),
    (b"FROB 1", ErrorCode.UNKNOWN_COMMAND),
    (b"START 1", ErrorCode.ARGUMENT_COUNT),
    (b"PING PONG", ErrorCode.ARGUMENT_COUNT),
    (b"START 9 charge", ErrorCode.NO_SUCH_CHANNEL),
    (b"START 0 charge", ErrorCode.NO_SUCH_CHANNEL),
    (b"START one charge", ErrorCode.BAD_CHANNEL),
    (b"START 1-3 charge", ErrorCode.BAD_CHANNEL),
    (b"STATE? 4-1", ErrorCode.BAD_CHANNEL),
    (b"STOP 1", ErrorCode.CHANNEL_IDLE),
    (b"PAUSE 2", ErrorCode.CHANNEL_IDLE),
    (b"RESUME 2", ErrorCode.CHANNEL_IDLE),
    (b"NEXT 3", ErrorCode.CHANNEL_IDLE),
    (b"START 1 ../rci", ErrorCode.NO_SUCH_PLAN),
    (b"START 1 broken", ErrorCode.PLAN_INVALID),
    (b"SAMPLES? 1 nan", ErrorCode.BAD_NUMBER),
    (b"SAMPLES? 1 0", ErrorCode.OUT_OF_RANGE),
    (b"SAMPLES? 1 51", ErrorCode.OUT_OF_RANGE),
    (b"BATTERY ADD x NMC inf", ErrorCode.NON_FINITE),
    (b"BATTERY ADD x NMC NaN", ErrorCode.NON_FINITE),
    (b"BATTERY ADD x NMC 2.5 vmax=1e999", ErrorCode.NON_FINITE),
    (b"BATTERY ADD x NMC 2.5V", ErrorCode.BAD_NUMBER),
    (b"BATTERY ADD x NMC -1", ErrorCode.OUT_OF_RANGE),
    (b"BATTERY ADD x NMC 2.5 vmin=4 vmax=3", ErrorCode.OUT_OF_RANGE),
    (b"BATTERY ADD x NMC 2.5 colour=red", ErrorCode.SYNTAX),
    (b"QUEUE CANCEL -1", ErrorCode.OUT_OF_RANGE),
    (b"QUEUE CANCEL one", ErrorCode.BAD_NUMBER),
    (b"HELP FROB", ErrorCode.UNKNOWN_COMMAND),
]


def test_bad_input_gets_its_error_and_changes_nothing(serve: Any, db: Database) -> None:
    with serve() as station, socket.create_connection(("127.0.0.1", station.port)) as sock:
        reader = sock.makefile("rb")
        for line, code in BAD_LINES:
            sock.sendall(line + b"\r\n")
            reply = reader.readline()
            assert reply.startswith(f"ERR {int(code)} ".encode()), (line, reply)
        sock.sendall(b"A" * 600 + b"\nstate? 2\n")  # overlong, then a good line
        assert reader.readline().startswith(b"ERR 13 ")
        assert reader.readline().startswith(b"OK 2,idle,-,")
        sock.sendall(b"HELP START\n")
        assert reader.readline() == (b"OK START <ch> <plan> [battery]: start a plan of the "
                                     b"plans folder; answers the test id [operator]\n")
    assert db.tests() == [] and db.batteries() == []


def test_a_flood_is_limited_and_does_not_slow_the_others(serve: Any) -> None:
    with serve(rate=100.0) as station, \
            socket.create_connection(("127.0.0.1", station.port)) as flood, \
            station.client() as polite:
        flood.sendall(b"PING\n" * 400)  # four seconds' worth at once
        replies = b""
        flood.settimeout(PATIENCE_S)
        while replies.count(b"\n") < 400:
            replies += flood.recv(65536)
        lines = replies.splitlines()
        assert 100 <= lines.count(b"OK PONG") < 400
        assert lines.count(b"OK PONG") + sum(1 for r in lines if r.startswith(b"ERR 60 ")) \
            == 400
        for _ in range(20):  # meanwhile another client is served as usual
            assert polite.command("PING").payload == "PONG"


def test_limits_on_connections_and_idle_clients(serve: Any, wait_until: Any) -> None:
    with serve(max_connections=2, idle_timeout="1 s") as station, station.client() as first, \
            socket.create_connection(("127.0.0.1", station.port)) as idle:
        idle.sendall(b"PING")  # a line that never ends
        with socket.create_connection(("127.0.0.1", station.port)) as third:
            third.settimeout(PATIENCE_S)
            assert third.recv(100).startswith(b"ERR 61 ")
            assert third.recv(100) == b""  # closed
        idle.settimeout(0.2)
        got = bytearray()

        def closed() -> bool:
            assert first.command("PING").payload == "PONG"  # the others go on (not idle)
            try:
                chunk = idle.recv(100)
            except TimeoutError:
                return False
            got.extend(chunk)
            return not chunk

        wait_until(closed, "the idle client to be cut off", interval=0)
        assert got.startswith(b"ERR 62 ")


def test_a_slow_reader_loses_pushes_and_is_told_how_many(
        serve: Any, monkeypatch: pytest.MonkeyPatch, read_until: Any) -> None:
    monkeypatch.setattr("cellbench_rci.server.PUSH_BUFFER_BYTES", 1024)
    with serve(speed=None) as station, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", station.port))
        with station.client() as rci:
            for channel in (1, 2, 3, 4):
                rci.command(f"START {channel} charge")
        assert station.interface.server is not None
        connections = station.interface.server.connections

        def shrink() -> None:  # the kernel's buffers would otherwise hold megabytes first
            for connection in connections:
                raw = connection.transport.get_extra_info("socket")
                if raw.getpeername() == sock.getsockname():
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        station.call(shrink)
        sock.sendall(b"SUBSCRIBE 1\nSUBSCRIBE 2\nSUBSCRIBE 3\nSUBSCRIBE 4\n")
        time.sleep(1.0)  # not reading meanwhile
        sock.settimeout(PATIENCE_S)
        data = read_until(lambda: sock.recv(65536), "a *DROPPED line",
                          lambda got: b"*DROPPED" in got and got.endswith(b"\n"))
        lines = data.splitlines()  # the runner's ticks take turns with the commands
        assert [line for line in lines if not line.startswith(b"*")] == [b"OK"] * 4
        dropped = [line for line in lines if line.startswith(b"*DROPPED ")]
        assert int(dropped[0].split()[1]) > 0
        assert all(line.startswith((b"*SAMPLE ", b"*DROPPED ")) for line in lines
                   if line != b"OK")


def test_tokens_give_roles(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "tokens.txt").write_text("# operators\nsecret-op operator lims\n",
                                         encoding="utf-8")
    with serve(tokens={"look-only": "viewer guest"}, token_file="tokens.txt") as station:
        with station.client() as anonymous:
            assert anonymous.command("PING").payload == "PONG"
            assert err(anonymous, "STATE? 1").code is ErrorCode.AUTH_REQUIRED
            assert err(anonymous, "AUTH guess").code is ErrorCode.AUTH_FAILED
            assert anonymous.command("AUTH look-only").payload == "viewer"
            assert anonymous.command("STATE? 1").records[0][1] == "idle"
            assert err(anonymous, "START 1 charge").code is ErrorCode.FORBIDDEN
        with station.client(token="secret-op") as operator:
            assert operator.role == "operator"
            test_id = operator.command("START 1 charge").payload
        events = station.control_events(int(test_id))
        assert events[0].startswith("token:lims: START 1 charge")


def test_tls_with_client_certificates(serve: Any, station_dir: Path, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(station_dir / "ca.pem"))
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(station_dir / "station.pem"))
    server.private_key_pem.write_to_path(str(station_dir / "station.key"))
    certificates = {}
    for name in ("lims", "guest"):
        issued = ca.issue_cert(f"{name}.lab", common_name=name)
        issued.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / f"{name}.pem"))
        certificates[name] = tls_context(station_dir / "ca.pem", tmp_path / f"{name}.pem")
    with serve(tcp="0.0.0.0:0", tls_cert="station.pem", tls_key="station.key",
               tls_client_ca="ca.pem", cert_roles={"lims": "operator"}) as station:
        with station.client(tls=certificates["lims"]) as lims:
            test_id = lims.command("START 2 charge").payload
        with station.client(tls=certificates["guest"]) as guest:
            assert guest.command("STATE? 2").records[0][1] == "running"
            assert err(guest, "STOP 2").code is ErrorCode.FORBIDDEN
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)), \
                station.client(tls=tls_context(station_dir / "ca.pem")) as anonymous:
            anonymous.command("PING")
        events = station.control_events(int(test_id))
        assert events[0].startswith("cert:lims: START 2 charge")


def test_listening_beyond_loopback_needs_authentication(serve: Any) -> None:
    with pytest.raises(StationError, match=r"interfaces\[0\] \(rci\) did not start: tcp = "
                                           r"'0.0.0.0:0' listens beyond this machine"), \
            serve(tcp="0.0.0.0:0"):
        pass


def test_settings_are_checked() -> None:
    for values, message in [({"tcp": "localhost"}, "expected host:port"),
                              ({"tcp": None}, "give tcp, serial or both"),
                              ({"tls_cert": "a.pem"}, "tls_cert and tls_key go together"),
                              ({"idle_timeout": 5}, "expected a duration"),
                              ({"rate": 0}, "greater than 0"),
                              ({"tokens": {"x": "admin"}}, r"a role \(viewer or operator\)"),
                              ({"tokens": {"x": "viewer a b"}}, "a role"),
                              ({"tokens": {"x": "viewer a", "y": "operator a"}},
                               "the label 'a' is given to two tokens"),
                              ({"tcp": "[::1]"}, "expected host:port"),
                              ({"preauth_timeout": "0 s"}, "must be positive"),
                              ({"colour": "red"}, "Extra inputs")]:
        with pytest.raises(ValueError, match=message):
            RciSettings.model_validate(values)


def test_the_serial_port_answers_like_tcp(serve: Any, read_until: Any) -> None:
    controller, port = os.openpty()
    try:
        with serve(tcp=None, serial=os.ttyname(port)) as station:
            assert station.interface.address is None

            def ask(line: bytes) -> bytes:
                os.write(controller, line)
                return read_until(lambda: os.read(controller, 4096), f"the reply to {line!r}",
                                  lambda got: got.endswith(b"\n"))

            assert ask(b"PING\r\n") == b"OK PONG\n"
            test_id = ask(b"START 4 charge\n").strip().split()[1]
            assert ask(b"STATE? 4\n").startswith(b"OK 4,running," + test_id)
            assert ask(b"FROB\n").startswith(b"ERR 11 ")
            assert ask(b"QUIT\n") == b"OK BYE\n"
            assert ask(b"PING\n") == b"OK PONG\n"  # the port stays open for the next client
            events = station.control_events(int(test_id))
            assert events[0].startswith(f"serial:{os.ttyname(port)}: START 4")
    finally:
        os.close(controller)
        os.close(port)


_WORDS = st.sampled_from(["STATE?", "START", "STOP", "PAUSE", "NEXT", "BATTERY", "ADD", "QUEUE",
                          "CANCEL", "1", "1-2", "ALL", "charge", "broken", "-1", "nan", "1e9",
                          "x=1", "vmax=4", "HELP", "SAMPLES?", "PING", "SUBSCRIBE", "AUTH",
                          "QUIT", "RESUME", "BATTERY?", "QUEUE?", "STEP?", "\t"])


def test_any_line_gets_one_reply_never_an_exception(serve: Any) -> None:
    with serve() as station:
        assert station.interface.server is not None
        dispatcher = station.interface.server.dispatcher
        session = Session("fuzz", Role.OPERATOR, lambda _: None)

        @settings(max_examples=400, deadline=None)
        @given(line=st.binary(max_size=80)
               | st.lists(_WORDS, max_size=6).map(lambda words: " ".join(words).encode()))
        def check(line: bytes) -> None:
            async def execute() -> bytes:
                reply = dispatcher.execute(session, line.replace(b"\n", b""))
                return reply if isinstance(reply, bytes) else await reply

            assert station.loop is not None
            reply = asyncio.run_coroutine_threadsafe(execute(), station.loop).result(PATIENCE_S)
            assert reply.endswith(b"\n") and reply.count(b"\n") == 1
            assert reply.startswith(b"OK") or (reply.startswith(b"ERR ")
                                               and not reply.startswith(b"ERR 99")), reply

        check()


def test_fuzzing_over_tcp_never_drops_the_other_clients(serve: Any) -> None:
    import random

    rng = random.Random(5)
    with serve() as station, station.client() as bystander, \
            socket.create_connection(("127.0.0.1", station.port)) as fuzzer:
        for _ in range(200):
            fuzzer.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))))
            if rng.random() < 0.5:
                fuzzer.sendall(b"\n")
        fuzzer.sendall(b"\nPING\n")
        fuzzer.settimeout(PATIENCE_S)
        got = b""
        while not got.endswith(b"OK PONG\n"):
            chunk = fuzzer.recv(65536)
            assert chunk, f"the fuzzer was disconnected after {got[-200:]!r}"
            got += chunk
        assert all(line.startswith((b"OK", b"ERR ")) for line in got.splitlines())
        assert bystander.command("STATE? ALL").records[0][0] == "1"


def test_the_documented_station_files_validate() -> None:
    """Every TOML example of docs/station.md and docs/rci.md is a valid station file, and
    every rci settings table in them is valid rci settings."""
    import re
    import tomllib

    docs = Path(__file__).parents[3] / "docs"
    manager = PluginManager()
    manager.load()
    checked = 0
    for page in ("station.md", "rci.md"):
        for block in re.findall(r"```toml\n(.+?)```", (docs / page).read_text("utf-8"), re.S):
            config = station_from_dict(tomllib.loads(block), page)
            for section in config.interfaces:
                assert section.kind == "rci"
                RciSettings.model_validate(section.settings)
                checked += 1
            Station(config, manager)  # drivers and interfaces build from their settings
    assert checked >= 3


class TestRciInterface(InterfaceContract):
    """The ``rci`` interface keeps the interface contract, as a station builds it, and answers
    a client on the port it serves."""

    plugin = "cellbench_rci.plugin"
    name = "rci"
    entry_point = "rci"
    cases: ClassVar[dict[str, dict[str, Any]]] = {"tcp": {"tcp": "127.0.0.1:0"}}

    async def exercise(self, interface: Any, control: StationControl) -> None:
        host, port = interface.address
        client = await AsyncRciClient.connect(host, port)
        try:
            assert (await client.command("PING")).payload == "PONG"
            assert (await client.command("CHANNELS?")).payload
        finally:
            await client.close()

"""The rci interface under attack, against a real serving station on loopback: input piling up
behind a waiting command, token guessing, clients that never authenticate, and the small things
(ranges, separators, TLS files, IPv6). Floods of costly reads on every interface while a cell
nears its limit: tests/test_interfaces_flood.py."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cellbench_core.station import StationError
from cellbench_core.storage import Database
from cellbench_rci.client import RciClient, RciError
from cellbench_rci.protocol import ErrorCode
from cellbench_sdk.access import AuthGuard

PATIENCE_S = 30.0


@pytest.fixture
def station_dir(tmp_path: Path) -> Path:
    (tmp_path / "plans").mkdir()
    return tmp_path


def err(client: RciClient, line: str) -> RciError:
    with pytest.raises(RciError) as caught:
        client.command(line)
    return caught.value


def test_input_piling_up_behind_a_waiting_command_is_not_read(
        serve: Any, wait_until: Callable[..., Any]) -> None:
    with serve() as station, station.client() as rci:
        control = station.service.control
        release = threading.Event()
        original = control.batteries

        async def slow_batteries() -> Any:  # as if the database were slow to answer
            await asyncio.to_thread(release.wait, PATIENCE_S)
            return await original()

        control.batteries = slow_batteries
        server = station.interface.server
        assert server is not None
        with socket.create_connection(("127.0.0.1", station.port)) as sock:
            sock.sendall(b"PING\n")
            assert sock.recv(100) == b"OK PONG\n"  # accepted by now
            try:
                sock.sendall(b"BATTERY?\n")
                sock.setblocking(False)
                sent = 0
                try:  # unterminated input until nobody takes more
                    while sent < 64 << 20:
                        sent += sock.send(b"x" * 65536)
                except BlockingIOError:
                    pass
                held = wait_until(
                    lambda: station.call(lambda: sorted((c._busy, len(c._buffer))
                                                        for c in server.connections)),
                    "BATTERY? to wait for the database", check=lambda h: h[-1][0])
            finally:
                release.set()
            assert held[0] == (False, 0) and len(held) == 2  # the other client, idle
            assert held[1][1] <= server.limits.pending_bytes + 256 * 1024  # one read beyond
            assert sent < 64 << 20  # the rest waits in the kernel's buffers, not the station's
            sock.setblocking(True)
            sock.settimeout(PATIENCE_S)
            reader = sock.makefile("rb")
            assert reader.readline() == b"OK\n"  # the answer, then the overlong line's error
            assert reader.readline().startswith(b"ERR 13 ")
        assert rci.command("PING").payload == "PONG"


def test_token_guessing_is_slowed_cut_off_and_summarised(
        serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("cellbench_rci.commands.AuthGuard", functools.partial(
        AuthGuard, base_delay_s=0.01, max_delay_s=0.05, max_failures=5, window_s=3600))
    with caplog.at_level(logging.WARNING), \
            serve(tokens={"the-real-secret": "operator lims"}) as station:
        with station.client() as guesser:
            assert err(guesser, "AUTH guess-1").code is ErrorCode.AUTH_FAILED
            assert err(guesser, "AUTH guess-2").code is ErrorCode.AUTH_FAILED
            third = err(guesser, "AUTH guess-3")
            assert third.message == "unknown token; 3 failed AUTH on this connection, closing"
            with pytest.raises((RciError, ConnectionError, OSError)):
                guesser.command("PING")  # closed
        with station.client() as guesser:
            assert err(guesser, "AUTH guess-4").code is ErrorCode.AUTH_FAILED
            assert err(guesser, "AUTH guess-5").code is ErrorCode.AUTH_FAILED
        with station.client() as late:  # five failures from this address: refused outright,
            refused = err(late, "AUTH the-real-secret")  # even with the right token
            assert re.fullmatch(r"too many failed AUTH from 127\.0\.0\.1; try again in "
                                r"[0-9]+ s", refused.message), refused.message
    failures = [r for r in caplog.records if "failed AUTH" in r.getMessage()]
    assert len(failures) == 1  # the first; the rest go into a count per window
    assert "guess" not in caplog.text and "the-real" not in caplog.text


def test_clients_that_never_authenticate_are_capped_and_timed_out(
        serve: Any, wait_until: Callable[..., Any]) -> None:
    with serve(tokens={"the-real-secret": "operator lims"}, max_unauthenticated=2,
               preauth_timeout="1 s") as station:
        first = socket.create_connection(("127.0.0.1", station.port))
        second = socket.create_connection(("127.0.0.1", station.port))
        for sock in (first, second):
            sock.settimeout(PATIENCE_S)
            sock.sendall(b"PING\n")
            assert sock.recv(100) == b"OK PONG\n"
        with station.client(token="the-real-secret") as operator:  # the oldest makes room
            assert first.recv(100).startswith(b"ERR 61 ")
            assert operator.command("STATE? 1").records[0][1] == "idle"

            def cut_off() -> bytes:  # PING as it may, it never authenticated
                second.sendall(b"PING\n")
                return second.recv(100)

            got = wait_until(cut_off, "the unauthenticated client to be cut off",
                             check=lambda data: b"ERR 62" in data, interval=0.2)
            assert b"no AUTH within 1 s; closing" in got
            assert operator.command("PING").payload == "PONG"  # authenticated: it stays
        first.close()
        second.close()


def test_numbers_out_of_range_name_the_argument_and_the_range(serve: Any) -> None:
    with serve() as station, station.client() as rci:
        for line, code, message in [
                ("SAMPLES? 4 -5", ErrorCode.OUT_OF_RANGE, "n must be 1 to 50, not -5"),
                ("SAMPLES? 4 51", ErrorCode.OUT_OF_RANGE, "n must be 1 to 50, not 51"),
                ("SAMPLES? 4 " + "9" * 40, ErrorCode.OUT_OF_RANGE,
                 "n must be 1 to 50, not 99999999999999999999..."),
                ("SAMPLES? 4 2.5", ErrorCode.BAD_NUMBER,
                 "n: '2.5' is not a whole number (1 to 50)"),
                ("QUEUE CANCEL -1", ErrorCode.OUT_OF_RANGE,
                 f"entry must be 1 to {2**62}, not -1")]:
            refused = err(rci, line)
            assert (refused.code, refused.message) == (code, message), line


def test_separators_in_battery_names_are_refused_at_entry(serve: Any, db: Database) -> None:
    with serve() as station, station.client() as rci:
        for line in ("BATTERY ADD cell;7 NMC 2.5", "BATTERY ADD cell,7 NMC 2.5",
                     "BATTERY ADD cell-7 NMC,LFP 2.5", "BATTERY ADD cell-7 NMC;x 2.5"):
            refused = err(rci, line)
            assert refused.code is ErrorCode.OUT_OF_RANGE
            assert "must not hold" in refused.message and "separates the fields" \
                in refused.message, refused.message
        rci.command("BATTERY ADD cell-7 NMC 2.5")
        assert rci.command("BATTERY?").records == [["cell-7", "NMC", "2.5"]]
    assert [b.name for b in db.batteries()] == ["cell-7"]


def test_missing_tls_files_are_named_with_their_setting(serve: Any, station_dir: Path
                                                        ) -> None:
    with pytest.raises(StationError, match=re.escape(
            f"tls_cert = 'station.pem': no file {station_dir / 'station.pem'}")), \
            serve(tls_cert="station.pem", tls_key="station.key"):
        pass
    with pytest.raises(StationError, match=re.escape(
            f"token_file = 'tokens.txt': no file {station_dir / 'tokens.txt'}")), \
            serve(token_file="tokens.txt"):
        pass


@pytest.mark.parametrize("host", ["[::1]", "127.0.0.2"])
def test_any_loopback_address_is_served_without_tokens(serve: Any, host: str) -> None:
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with serve(tcp=f"{host}:0") as station:
        address = station.interface.address
        assert address is not None
        with RciClient.connect(host.strip("[]"), address[1], timeout=PATIENCE_S) as rci:
            assert rci.command("PING").payload == "PONG"

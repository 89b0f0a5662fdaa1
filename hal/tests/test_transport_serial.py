"""SerialLineTransport through pyserial against a line server on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from cellbench_hal import (
    DeviceClosed,
    DeviceConnectionError,
    DeviceTimeout,
    SerialLineTransport,
)

if TYPE_CHECKING:
    from conftest import PtyPeer


def test_query_and_bytes_over_a_pty(pty_peer: PtyPeer) -> None:
    pty_peer.server.terminator = b"\r\n"

    async def run() -> None:
        async with SerialLineTransport(pty_peer.port, baudrate=115200, parity="E",
                                       write_termination="\r\n", timeout=0.5) as io:
            assert io.name == f"serial://{pty_peer.port}"
            assert await io.query("*IDN?") == "re:*IDN?"
            await io.write_bytes(b"BIN\r\n")
            assert await io.read_bytes(4) == b"\x00\x01\x02\xff"

    asyncio.run(run())
    assert pty_peer.server.received == [b"*IDN?", b"BIN"]


def test_a_late_reply_is_dropped_and_the_port_is_locked(pty_peer: PtyPeer) -> None:
    async def run() -> None:
        async with SerialLineTransport(pty_peer.port, timeout=0.2) as io:
            with pytest.raises(DeviceTimeout, match="no reply within 0.2 s"):
                await io.query("SLOW 0.3")
            assert await io.query("NEXT") == "re:NEXT"
            other = SerialLineTransport(pty_peer.port, name="second")
            with pytest.raises(DeviceConnectionError, match="^second: cannot open: "):
                await other.open()

    asyncio.run(run())


def test_an_unplugged_port_raises_and_closes(pty_peer: PtyPeer) -> None:
    async def run() -> None:
        io = SerialLineTransport(pty_peer.port, timeout=1.0, name="chamber")
        await io.open()
        assert await io.query("PING") == "re:PING"
        pty_peer.unplug()
        with pytest.raises(DeviceConnectionError, match="^chamber: connection lost: "):
            await io.query("PING")
        with pytest.raises(DeviceClosed, match=r"^chamber: not open \(connection lost: "):
            await io.query("PING")
        await io.close()

    asyncio.run(run())


def test_a_missing_port_cannot_be_opened(tmp_path: object) -> None:
    async def run() -> None:
        io = SerialLineTransport("/dev/cellbench-no-such-port")
        with pytest.raises(DeviceConnectionError, match="cannot open: .*no-such-port"):
            await io.open()

    asyncio.run(run())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"baudrate": 0}, "baudrate must be a positive integer, not 0"),
    ({"bytesize": 9}, "bytesize must be one of 5, 6, 7, 8, not 9"),
    ({"parity": "X"}, "parity must be one of N, E, O, M, S, not 'X'"),
    ({"stopbits": 3}, "stopbits must be one of 1, 1.5, 2, not 3"),
    ({"rtscts": True, "xonxoff": True}, "choose one flow control"),
])
def test_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SerialLineTransport("/dev/ttyUSB0", **kwargs)  # type: ignore[arg-type]

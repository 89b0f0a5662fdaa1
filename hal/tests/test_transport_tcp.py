"""TcpLineTransport against a real line server on loopback (see conftest.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from cellbench_hal import (
    BadReply,
    DeviceClosed,
    DeviceConnectionError,
    DeviceTimeout,
    DeviceWorker,
    TcpLineTransport,
)

if TYPE_CHECKING:
    from conftest import TcpPeer


def transport(peer: TcpPeer, **options: object) -> TcpLineTransport:
    options.setdefault("timeout", 0.5)
    return TcpLineTransport("127.0.0.1", peer.port, **options)  # type: ignore[arg-type]


def test_query_write_read_line_and_bytes(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        async with transport(tcp_peer) as io:
            assert await io.query("*IDN?") == "re:*IDN?"
            await io.write("VOLT 4.2")
            assert await io.read_line() == "re:VOLT 4.2"
            await io.write_bytes(b"BIN\n")
            assert await io.read_bytes(4) == b"\x00\x01\x02\xff"
            assert await io.read_bytes(0) == b""

    asyncio.run(run())
    assert tcp_peer.server.received == [b"*IDN?", b"VOLT 4.2", b"BIN"]


def test_terminators_and_encoding(tcp_peer: TcpPeer) -> None:
    tcp_peer.server.terminator = b"\r"

    async def run() -> None:
        async with transport(tcp_peer, write_termination="\r", read_termination="\n",
                             encoding="latin-1") as io:
            assert await io.query("T=25°C") == "re:T=25°C"
            with pytest.raises(ValueError, match="holds the write terminator"):
                await io.write("A\rB")
            with pytest.raises(ValueError, match="timeout must be a positive number"):
                await io.query("A", timeout=0)

    asyncio.run(run())
    assert tcp_peer.server.received == ["T=25°C".encode("latin-1")]


def test_ascii_refuses_other_text_before_sending(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        async with transport(tcp_peer) as io:
            with pytest.raises(ValueError, match="is not ascii text"):
                await io.write("25 °C")

    asyncio.run(run())
    assert tcp_peer.server.received == []


def test_a_late_reply_is_not_taken_for_the_next_one(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        async with transport(tcp_peer, timeout=0.2) as io:
            with pytest.raises(DeviceTimeout, match=r"tcp://127.0.0.1:\d+: no reply within 0.2 s"):
                await io.query("SLOW 0.3")
            assert await io.query("NEXT") == "re:NEXT"  # not "late"
            assert await io.query("SLOW 0.3", timeout=1.0) == "late"

    asyncio.run(run())


def test_a_reply_without_terminator_times_out_and_is_dropped(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        async with transport(tcp_peer, timeout=0.2) as io:
            with pytest.raises(DeviceTimeout, match="received b'garbage' without the terminator"):
                await io.query("GARBAGE")
            assert await io.query("PING") == "re:PING"

    asyncio.run(run())


def test_bad_replies(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        async with transport(tcp_peer, timeout=0.2, max_line=16) as io:
            with pytest.raises(BadReply, match=r"the reply b'\\xff\\xfe' is not ascii text"):
                await io.query("NOTTEXT")
            with pytest.raises(BadReply, match="more than 16 bytes arrived without the "
                                               "terminator '\\\\n'"):
                await io.query("LONG")
            assert await io.query("PING") == "re:PING"
            with pytest.raises(DeviceTimeout, match="2 of 4 bytes arrived within 0.2 s"):
                await io.write_bytes(b"BI")  # two bytes of a reply that will never come
                await io.write_bytes(b"N\n")
                await io.read_bytes(2)
                await io.read_bytes(4)

    asyncio.run(run())


def test_clear_drops_unread_input(tcp_peer: TcpPeer) -> None:
    tcp_peer.server.greeting = b"hello\nwelcome\n"

    async def run() -> None:
        async with transport(tcp_peer) as io:
            assert await io.read_line() == "hello"
            await asyncio.sleep(0.1)  # the rest of the greeting arrives
            await io.clear()
            assert await io.query("PING") == "re:PING"

    asyncio.run(run())


def test_a_peer_that_closes_raises_and_leaves_the_transport_closed(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        io = transport(tcp_peer)
        await io.open()
        with pytest.raises(DeviceConnectionError,
                           match="connection lost: the peer closed the connection"):
            await io.query("BYE")
        assert not io.is_open
        with pytest.raises(DeviceClosed, match=r"not open \(connection lost: the peer closed"):
            await io.query("PING")
        await io.open()  # connects again
        assert await io.query("PING") == "re:PING"
        await io.close()

    asyncio.run(run())


def test_a_closed_transport_refuses_calls(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        io = transport(tcp_peer, name="psu")
        calls = [io.query("A"), io.write("A"), io.read_line(), io.read_bytes(1),
                 io.write_bytes(b"A"), io.clear()]
        for call in calls:
            with pytest.raises(DeviceClosed, match="^psu: not open$"):
                await call
        await io.open()
        await io.open()  # open already: no second connection
        await io.close()
        await io.close()  # idempotent
        with pytest.raises(DeviceClosed, match="^psu: not open$"):
            await io.query("A")

    asyncio.run(run())
    assert tcp_peer.server.received == []


def test_close_refuses_calls_queued_behind_a_running_one(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        io = transport(tcp_peer)
        await io.open()
        slow = asyncio.ensure_future(io.query("SLOW 0.2"))
        queued = asyncio.ensure_future(io.query("QUEUED"))
        await asyncio.sleep(0.05)
        await io.close()
        assert await slow == "late"  # the running call finished before the socket closed
        with pytest.raises(DeviceClosed):
            await queued

    asyncio.run(run())
    assert b"QUEUED" not in tcp_peer.server.received


def test_connecting_fails_with_typed_errors() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens here

        async def run() -> None:
            io = TcpLineTransport("127.0.0.1", port, name="psu")
            with pytest.raises(DeviceConnectionError, match="^psu: cannot open: .*refused"):
                await io.open()
            assert not io.is_open

        asyncio.run(run())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="a TCP port is 1..65535, not 0"):
        TcpLineTransport("localhost", 0)
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        TcpLineTransport("localhost", 1, timeout=float("nan"))
    with pytest.raises(ValueError, match="read_termination must not be empty"):
        TcpLineTransport("localhost", 1, read_termination="")
    with pytest.raises(LookupError):
        TcpLineTransport("localhost", 1, encoding="no-such-codec")
    assert TcpLineTransport("::1", 5025).name == "tcp://[::1]:5025"


def test_concurrent_queries_from_threads_and_tasks_never_cross(tcp_peer: TcpPeer) -> None:
    io = transport(tcp_peer, timeout=5.0)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(io.open())
    problems: list[str] = []

    def client(n: int) -> None:
        async def queries() -> None:
            # several tasks of this thread's loop at once, too
            async def one(i: int) -> None:
                command = f"C{n}-{i}"
                reply = await io.query(command)
                if reply != f"re:{command}":
                    problems.append(f"{command} got {reply}")
            await asyncio.gather(*(one(i) for i in range(30)))
        asyncio.run(queries())

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loop.run_until_complete(io.close())
    loop.close()
    assert problems == []
    assert len(tcp_peer.server.received) == 120
    assert time.monotonic() - started < 30


def test_a_shared_worker_serves_the_transport_and_stays_open(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        worker = DeviceWorker("psu", 1.0)
        io = transport(tcp_peer, worker=worker)
        async with io:
            thread = await worker.call(threading.current_thread)
            assert thread is not threading.current_thread()
            assert await io.query("PING") == "re:PING"
        assert await worker.call(lambda: 42) == 42  # the device's worker is the device's
        worker.close()

    asyncio.run(run())

"""The SDK's line-emulator machinery (``cellbench_sdk.emulation.LineEmulator``): a tiny
instrument served over TCP and a pty, with each fault of LineFaults seen from a real client."""

from __future__ import annotations

import asyncio
import os
import termios

import pytest

from cellbench_sdk.emulation import LineEmulator


class Echo(LineEmulator):
    """Answers ``ECHO x`` with ``x``; anything else goes unanswered."""

    def respond(self, line: str) -> str | None:
        return line[5:] if line.startswith("ECHO ") else None


async def ask(port: int, *lines: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for line in lines:
        writer.write(line)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(1000), 0.5)
    except TimeoutError:
        return b"<silence>"
    finally:
        writer.close()


def test_tcp_replies_and_faults() -> None:
    async def run() -> list[bytes]:
        async with Echo(terminator=b"\r\n") as emulator:
            replies = [await ask(emulator.port, b"NOISE\r\n", b"ECHO hello\r\n")]
            emulator.faults.garbled = True
            replies.append(await ask(emulator.port, b"ECHO abc\r\n"))
            emulator.faults.garbled, emulator.faults.drop = False, True
            replies.append(await ask(emulator.port, b"ECHO abcdef\r\n"))
            emulator.faults.drop, emulator.faults.silent = False, True
            replies.append(await ask(emulator.port, b"ECHO abc\r\n"))
            assert list(emulator.received) == ["NOISE", "ECHO hello", "ECHO abc",
                                               "ECHO abcdef", "ECHO abc"]
        return replies

    assert asyncio.run(run()) == [b"hello\r\n", b"\xfe\xff#@!abc\r\n", b"abcd", b"<silence>"]


def test_slow_replies_wait_and_stop_ends_a_waiting_session() -> None:
    async def run() -> None:
        emulator = Echo()
        port = await emulator.start()
        emulator.faults.slow_s = 0.3
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ECHO x\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.05)
        await emulator.stop()  # cancels the session that waits
        assert await asyncio.wait_for(reader.read(), 1.0) == b""
        writer.close()
        await emulator.stop()  # idempotent

    asyncio.run(run())


def test_a_pty_is_a_serial_line() -> None:
    async def run() -> bytes:
        emulator = Echo()
        path = await emulator.start_pty()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            attributes = termios.tcgetattr(fd)
            assert not attributes[3] & termios.ECHO  # raw: nothing echoed back
            os.write(fd, b"ECHO serial\n")
            loop = asyncio.get_running_loop()
            ready = asyncio.Event()
            loop.add_reader(fd, ready.set)
            await asyncio.wait_for(ready.wait(), 2.0)
            loop.remove_reader(fd)
            return os.read(fd, 100)
        finally:
            os.close(fd)
            await emulator.stop()

    assert asyncio.run(run()) == b"serial\n"

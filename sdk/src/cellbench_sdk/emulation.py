"""What emulators of instruments and controllers share: model time that runs ``speed`` times
faster than the wall clock, the first-order approach of a temperature (or humidity) to its
setpoint under a ramp-rate limit, the thermal model every climate chamber emulator uses, and
:class:`LineEmulator`, which serves an instrument that speaks lines of text over TCP and over a
pseudo-terminal, with faults on demand.

Emulators answer from a model that advances whenever a request comes in: they ask
:class:`ModelTime` how many model seconds passed and move their state on by :func:`approach`.
A line-protocol emulator subclasses :class:`LineEmulator` and only decides what to answer::

    class Thermometer(LineEmulator):
        def respond(self, line: str) -> str | None:
            return "23.5" if line == "TEMP?" else None

    async with Thermometer() as emulator:   # listens on 127.0.0.1:emulator.port
        emulator.faults.slow_s = 0.5
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import tty
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self

__all__ = ["LineEmulator", "LineFaults", "ModelTime", "approach"]


def approach(value: float, target: float, dt: float, tau: float,
             max_rate: float = math.inf) -> float:
    """``value`` after ``dt`` seconds of dx/dt = (target - x)/tau with |dx/dt| at most
    ``max_rate`` per second, exactly: while the gap is wider than ``max_rate * tau`` the rate
    limit holds (a straight ramp), the rest of ``dt`` is the exponential approach."""
    if dt <= 0.0:
        return value
    gap = value - target
    excess = abs(gap) - max_rate * tau
    ramp_s = 0.0
    if excess > 0:
        ramp_s = min(dt, excess / max_rate)
        gap -= math.copysign(max_rate * ramp_s, gap)
    return target + gap * math.exp(-(dt - ramp_s) / tau)


class ModelTime:
    """Model seconds that pass ``speed`` times faster than ``clock`` (wall seconds)."""

    def __init__(self, speed: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        self.speed = speed
        self._clock = clock
        self._wall = clock()

    def restart(self) -> None:
        """Count from now (an emulator that starts serving)."""
        self._wall = self._clock()

    def elapsed(self) -> float:
        """Model seconds since the last call (or since it was made or restarted)."""
        now = self._clock()
        dt = (now - self._wall) * self.speed
        self._wall = now
        return max(dt, 0.0)


@dataclass
class LineFaults:
    """How a :class:`LineEmulator` misbehaves; change the fields while it runs."""

    slow_s: float = 0.0  # wait this long before each reply
    garbled: bool = False  # put bytes that are not ASCII before each reply
    silent: bool = False  # answer nothing
    drop: bool = False  # send half of the next reply, then close the connection


class LineEmulator(ABC):
    """An instrument that answers lines of text; one instance may serve several connections.

    ``terminator`` ends every received line (one may also end in CR LF) and every reply,
    unless ``reply_terminator`` says otherwise (a controller that answers CR LF).
    """

    def __init__(self, *, terminator: bytes = b"\n", encoding: str = "ascii",
                 reply_terminator: bytes | None = None) -> None:
        self.terminator = terminator
        self.reply_terminator = terminator if reply_terminator is None else reply_terminator
        self.encoding = encoding
        self.faults = LineFaults()
        #: The last lines received, in order.
        self.received: deque[str] = deque(maxlen=1000)
        #: The TCP port of the last :meth:`start`.
        self.port = 0
        self._servers: list[asyncio.Server] = []
        self._ptys: list[tuple[int, int]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @abstractmethod
    def respond(self, line: str) -> str | None:
        """The reply to one received line (without its terminator), or None for a command
        that is not answered."""

    async def _answer(self, line: bytes, write: Callable[[bytes], Awaitable[None]]) -> bool:
        """Answer one line through ``write``; False to close the connection."""
        text = line.decode(self.encoding, "replace")
        self.received.append(text)
        reply = self.respond(text)
        faults = self.faults
        if reply is None:
            return True
        data = reply.encode(self.encoding, "replace") + self.reply_terminator
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        if faults.silent:
            return True
        if faults.drop:
            await write(data[: len(data) // 2])
            return False
        await write(b"\xfe\xff#@!" + data if faults.garbled else data)
        return True

    async def _session(self, reader: asyncio.StreamReader,
                       write: Callable[[bytes], Awaitable[None]]) -> None:
        # A line longer than the reader's limit (ValueError) ends the connection.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while line := await reader.readuntil(self.terminator):
                line = line[: -len(self.terminator)].rstrip(b"\r")
                if line.strip() and not await self._answer(line.strip(), write):
                    return

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        self._writers.add(writer)
        self._track(asyncio.current_task())
        try:
            # stop() cancels a session that waits (slow, silent); the connection just ends.
            with contextlib.suppress(asyncio.CancelledError):
                await self._session(reader, write)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _track(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on TCP; the port it listens on."""
        server = await asyncio.start_server(self._client, host, port)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        return self.port

    async def start_pty(self) -> str:
        """Answer on a new pseudo-terminal; the path of its serial end (``/dev/pts/N``)."""
        controller, device = os.openpty()
        tty.setraw(device)
        self._ptys.append((controller, device))
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()

        def readable() -> None:
            try:
                reader.feed_data(os.read(controller, 4096))
            except OSError:
                loop.remove_reader(controller)
                reader.feed_eof()

        async def write(data: bytes) -> None:
            os.write(controller, data)

        loop.add_reader(controller, readable)
        task = loop.create_task(self._session(reader, write))
        task.add_done_callback(lambda _: loop.remove_reader(controller))
        self._track(task)
        return os.ttyname(device)

    async def disconnect(self) -> None:
        """Close every TCP connection now (the server keeps listening)."""
        for writer in list(self._writers):
            writer.close()

    async def stop(self) -> None:
        """Stop listening and close every connection and pseudo-terminal; idempotent."""
        for server in self._servers:
            server.close()
        await self.disconnect()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()
        for controller, device in self._ptys:
            os.close(controller)
            os.close(device)
        self._ptys.clear()

    async def serve_forever(self, host: str, port: int) -> None:
        """Listen on ``host:port`` until cancelled, then stop."""
        await self.start(host, port)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

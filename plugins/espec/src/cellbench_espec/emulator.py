"""An emulated ESPEC controller (P300 / SCP-220 ASCII protocol) with a chamber behind it.

The chamber is a first-order thermal model: temperature (and humidity, when the chamber has it)
approaches the setpoint in CONSTANT mode, or the ambient in STANDBY / OFF, with a time constant,
the temperature no faster than a ramp limit. ``speed`` runs it faster than the wall clock.
:class:`Faults` makes it misbehave. Serve it on TCP (:func:`serve`, :meth:`EspecEmulator.start`)
or on a pseudo-terminal (:meth:`EspecEmulator.start_pty`) as a serial port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import tty
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

from cellbench_sdk.emulation import ModelTime, approach

#: The alarm code the emulator reports for an open door (an emulator choice, see the docs).
DOOR_OPEN = 1
_SET = re.compile(r"^(TEMP|HUMI),\s*S(OFF|[-+]?\d+(?:\.\d+)?)$")
_MODE = re.compile(r"^MODE,\s*(CONSTANT|STANDBY|OFF)$")


@dataclass
class Faults:
    """How the emulator misbehaves; change the fields while it runs."""

    slow_s: float = 0.0  # wait this long before each reply
    garbled: bool = False  # answer bytes that are not ASCII
    silent: bool = False  # answer nothing
    drop: bool = False  # send half a reply, then close the connection
    refuse: str | None = None  # answer setpoint and mode commands with "NA:<refuse>"
    door_open: bool = False  # alarm DOOR_OPEN in MON? and ALARM?
    alarms: list[int] = field(default_factory=list)  # further active alarm codes


class EspecEmulator:
    """The controller and its chamber; one instance may serve several connections."""

    def __init__(self, *, humidity: bool = False, speed: float = 1.0,
                 time_constant_s: float = 600.0, ramp_c_per_min: float = 3.0,
                 ambient_c: float = 23.0, ambient_pct: float = 45.0,
                 lower_c: float = -40.0, upper_c: float = 150.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.humidity = humidity
        self.time_constant_s = time_constant_s
        self.ramp_c_per_min = ramp_c_per_min
        self.ambient_c, self.ambient_pct = ambient_c, ambient_pct
        self.lower_c, self.upper_c = lower_c, upper_c
        self.faults = Faults()
        self.temperature_c, self.humidity_pct = ambient_c, ambient_pct
        self.setpoint_c = ambient_c
        self.setpoint_pct: float | None = ambient_pct if humidity else None
        self.mode = "STANDBY"
        self.received: deque[str] = deque(maxlen=1000)  # the last command lines, in order
        self._time = ModelTime(speed, clock)
        self._servers: list[asyncio.AbstractServer] = []
        self._ptys: list[tuple[int, int]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    # -- the chamber --------------------------------------------------------------------------

    def advance(self) -> None:
        """Bring the thermal model to now."""
        dt = self._time.elapsed()
        running = self.mode == "CONSTANT"
        target = self.setpoint_c if running else self.ambient_c
        self.temperature_c = approach(self.temperature_c, target, dt, self.time_constant_s,
                                      self.ramp_c_per_min / 60.0)
        wanted = self.setpoint_pct if running and self.setpoint_pct is not None \
            else self.ambient_pct
        self.humidity_pct = approach(self.humidity_pct, wanted, dt, self.time_constant_s)

    def active_alarms(self) -> list[int]:
        """The alarm codes ALARM? reports."""
        return ([DOOR_OPEN] if self.faults.door_open else []) + list(self.faults.alarms)

    def respond(self, line: str) -> str:
        """The reply to one command line (without terminators), faults aside."""
        self.advance()
        command = line.strip().upper()
        self.received.append(command)
        if command == "TEMP?":
            return (f"{self.temperature_c:.1f},{self.setpoint_c:.1f},{self.upper_c:.1f},"
                    f"{self.lower_c:.1f}")
        if command == "HUMI?":
            if not self.humidity:
                return "NA:CONT NOT READY-1"
            setpoint = "OFF" if self.setpoint_pct is None else f"{self.setpoint_pct:.1f}"
            return f"{self.humidity_pct:.1f},{setpoint},100.0,0.0"
        if command == "MON?":
            humidity = f"{self.humidity_pct:.1f}" if self.humidity else ""
            return f"{self.temperature_c:.1f},{humidity},{self.mode},{len(self.active_alarms())}"
        if command == "MODE?":
            return self.mode
        if command == "ALARM?":
            return ",".join(str(n) for n in [len(self.active_alarms()), *self.active_alarms()])
        if (mode := _MODE.match(command)) is not None:
            return self._change(command, lambda: setattr(self, "mode", mode[1]))
        if (match := _SET.match(command)) is not None:
            return self._set(command, match[1], match[2])
        return "NA:CMD ERR"

    def _set(self, command: str, loop: str, value: str) -> str:
        if loop == "HUMI" and not self.humidity:
            return "NA:CONT NOT READY-1"
        if value == "OFF":
            if loop == "TEMP":
                return "NA:PARA ERR"
            return self._change(command, lambda: setattr(self, "setpoint_pct", None))
        number = float(value)
        low, high = (self.lower_c, self.upper_c) if loop == "TEMP" else (0.0, 100.0)
        if not low <= number <= high:
            return "NA:DATA OUT OF RANGE"
        name = "setpoint_c" if loop == "TEMP" else "setpoint_pct"
        return self._change(command, lambda: setattr(self, name, number))

    def _change(self, command: str, change: Callable[[], None]) -> str:
        if self.faults.refuse is not None:
            return f"NA:{self.faults.refuse}"
        change()
        return f"OK: {command}"

    # -- serving ------------------------------------------------------------------------------

    async def _answer(self, line: bytes, write: Callable[[bytes], Awaitable[None]]) -> bool:
        """Answer one received line through ``write``; False to close the connection."""
        reply = self.respond(line.decode("ascii", "replace")).encode("ascii") + b"\r\n"
        faults = self.faults
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        if faults.silent:
            return True
        if faults.drop:
            await write(reply[: len(reply) // 2])
            return False
        await write(b"\xfe\xff#@!" + reply[3:] if faults.garbled else reply)
        return True

    async def _session(self, reader: asyncio.StreamReader,
                       write: Callable[[bytes], Awaitable[None]]) -> None:
        # A line longer than the reader's limit (ValueError) ends the connection.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while line := await reader.readline():
                if line.strip() and not await self._answer(line.rstrip(b"\r\n"), write):
                    return

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            # stop() cancels a session that waits (slow, silent); the connection just ends.
            with contextlib.suppress(asyncio.CancelledError):
                await self._session(reader, write)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on TCP (a serial server's port); the port it listens on."""
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
        self._tasks.add(task)
        return os.ttyname(device)

    async def stop(self) -> None:
        """Stop listening and close every connection and pseudo-terminal."""
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()
        for controller, device in self._ptys:
            os.close(controller)
            os.close(device)
        self._ptys.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


async def serve(host: str, port: int, **options: Any) -> None:
    """Serve an emulated ESPEC controller on ``host:port`` until cancelled; ``options`` as for
    :class:`EspecEmulator`."""
    emulator = EspecEmulator(**options)
    await emulator.start(host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()

"""An emulated SIMSERV controller: a TCP server with a thermal model behind it, able to misbehave.

``SimservEmulator`` is used in-process (tests, the benchmark); ``serve`` runs one until it is
cancelled (``cellbench simserv emulate``). The model runs ``speed`` times faster than the wall
clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from cellbench_sdk.emulation import ModelTime, approach
from cellbench_simserv import protocol as simserv
from cellbench_simserv.protocol import Command

UNKNOWN_COMMAND = -5
BAD_PARAMETERS = -6
DOOR_MESSAGE = 1
ALARM_MESSAGE = 2
GARBLED = b"\x9a#\xe4?"


@dataclass
class Faults:
    """What the emulator does wrong; change the fields while it runs."""

    delay_s: float = 0.0
    """Every reply waits this long (wall-clock seconds)."""
    garbled: bool = False
    """Replies are bytes that are no SIMSERV reply."""
    silent: bool = False
    """Commands get no reply at all."""
    drop_mid_reply: bool = False
    """The next reply stops halfway and the connection is closed."""
    refuse_setpoints: bool = False
    """Every setpoint is answered with code -6 (incorrect parameters)."""


class SimservEmulator:
    """A SIMSERV controller of one chamber on ``host``:``port`` (0: any free port)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, speed: float = 1.0,
                 humidity: bool = False, ambient_c: float = 25.0,
                 ambient_humidity_pct: float = 40.0, time_constant_s: float = 300.0,
                 max_ramp_k_per_min: float = 3.0, humidity_time_constant_s: float = 120.0,
                 temperature_min_c: float = -70.0, temperature_max_c: float = 180.0) -> None:
        if not (speed > 0 and time_constant_s > 0 and humidity_time_constant_s > 0
                and max_ramp_k_per_min > 0):
            raise ValueError("speed, time constants and the ramp limit must be positive")
        self.host = host
        self._requested_port = port
        self.humidity = humidity
        self.ambient_c = ambient_c
        self.ambient_humidity_pct = ambient_humidity_pct
        self.time_constant_s = time_constant_s
        self.max_ramp_k_per_min = max_ramp_k_per_min
        self.humidity_time_constant_s = humidity_time_constant_s
        self.temperature_limits = (temperature_min_c, temperature_max_c)
        self.faults = Faults()
        self.door_open = False
        """An open door: an alarm message, and the chamber drifts to ambient."""
        self.alarm: str | None = None
        """The text of an active alarm message, or None."""
        self.running = False
        self.temperature_c = ambient_c
        self.humidity_pct = ambient_humidity_pct
        self.setpoints = {simserv.TEMPERATURE: ambient_c, simserv.HUMIDITY: ambient_humidity_pct}
        self.received: list[str] = []
        """Every command line received, without its terminator."""
        self._time = ModelTime(speed)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._time.restart()
        self._server = await asyncio.start_server(self._client, self.host, self._requested_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def advance(self, model_seconds: float) -> None:
        """Run the thermal model ``model_seconds`` further (on top of the wall clock)."""
        self._step(model_seconds)

    def status(self) -> int:
        """The status word: 1, plus 2 while conditioning, plus 8 while an alarm is active."""
        return (1 + simserv.STATUS_RUNNING * self.running
                + simserv.STATUS_ALARM * self._alarm_active())

    def handle(self, line: str) -> str:
        """The reply to one command line (both without the terminator)."""
        self._catch_up()
        fields = line.split(simserv.SEPARATOR)
        try:
            command = Command(int(fields[0]))
        except ValueError:
            return str(UNKNOWN_COMMAND)
        arguments = fields[2:]
        if len(fields) < 2 or fields[1] != "1":
            return str(BAD_PARAMETERS)
        try:
            values = self._execute(command, arguments)
        except (ValueError, KeyError, IndexError):
            return str(BAD_PARAMETERS)
        return simserv.SEPARATOR.join([str(simserv.OK), *values])

    def _execute(self, command: Command, args: list[str]) -> list[str]:
        """The reply's values; ValueError, KeyError or IndexError for bad parameters."""
        expected = {Command.STATUS: 0, Command.MESSAGE_COUNT: 0, Command.SET_SETPOINT: 2,
                    Command.SET_DIGITAL_OUTPUT: 2}.get(command, 1)
        if len(args) != expected:
            raise ValueError(f"{command.describe} takes {expected} arguments")
        if command is Command.STATUS:
            return [str(self.status())]
        if command is Command.SET_SETPOINT:
            self._set(self._variable(args[0]), float(args[1]))
            return []
        if command is Command.READ_SETPOINT:
            return [simserv.format_number(self.setpoints[self._variable(args[0])])]
        if command is Command.READ_ACTUAL:
            temperature = self._variable(args[0]) == simserv.TEMPERATURE
            return [f"{self.temperature_c if temperature else self.humidity_pct:.1f}"]
        if command is Command.SET_DIGITAL_OUTPUT:
            if int(args[0]) != simserv.MANUAL_OPERATION or args[1] not in ("0", "1"):
                raise ValueError("only manual operation is switched, on (1) or off (0)")
            self.running = args[1] == "1"
            return []
        if command is Command.MESSAGE_COUNT:
            return ["2"]
        return [self._message(command, int(args[0]))]

    def _message(self, command: Command, number: int) -> str:
        """Messages: 1 is the open door, 2 the alarm; both are alarms."""
        texts = {DOOR_MESSAGE: "Door open", ALARM_MESSAGE: self.alarm or "Alarm"}
        active = {DOOR_MESSAGE: self.door_open, ALARM_MESSAGE: self.alarm is not None}
        if number not in texts:
            raise KeyError(f"no message {number}")
        if command is Command.MESSAGE_TYPE:
            return str(simserv.MESSAGE_ALARM)
        if command is Command.MESSAGE_STATUS:
            return str(int(active[number]))
        return texts[number]

    def _variable(self, text: str) -> int:
        variable = int(text)
        if variable != simserv.TEMPERATURE and not (self.humidity
                                                     and variable == simserv.HUMIDITY):
            raise ValueError(f"no controlled variable {variable}")
        return variable

    def _set(self, variable: int, value: float) -> None:
        low, high = self.temperature_limits if variable == simserv.TEMPERATURE else (0.0, 100.0)
        if self.faults.refuse_setpoints or not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"setpoint {value} refused")
        self.setpoints[variable] = value

    def _alarm_active(self) -> bool:
        return self.door_open or self.alarm is not None

    def _catch_up(self) -> None:
        """Run the model up to the present wall-clock time, times ``speed``."""
        self._step(self._time.elapsed())

    def _step(self, dt: float) -> None:
        conditioning = self.running and not self.door_open
        target = self.setpoints[simserv.TEMPERATURE] if conditioning else self.ambient_c
        self.temperature_c = approach(self.temperature_c, target, dt, self.time_constant_s,
                                      self.max_ramp_k_per_min / 60.0)
        if self.humidity:
            target = self.setpoints[simserv.HUMIDITY] if conditioning else self.ambient_humidity_pct
            self.humidity_pct = approach(self.humidity_pct, target, dt,
                                         self.humidity_time_constant_s)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        terminator = simserv.TERMINATOR.encode(simserv.ENCODING)
        self._writers.add(writer)
        try:
            while True:
                line = (await reader.readuntil(terminator))[:-1].decode(simserv.ENCODING)
                self.received.append(line)
                faults = self.faults
                if faults.silent:
                    continue
                if faults.delay_s > 0:
                    await asyncio.sleep(faults.delay_s)
                data = GARBLED if faults.garbled else self.handle(line).encode(simserv.ENCODING)
                data += terminator
                if faults.drop_mid_reply:
                    faults.drop_mid_reply = False
                    writer.write(data[: max(1, len(data) // 2)])
                    await writer.drain()
                    return
                writer.write(data)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def serve(host: str = "127.0.0.1", port: int = simserv.DEFAULT_PORT, **options: Any) -> None:
    """Run an emulated controller on ``host``:``port`` until cancelled; ``options`` are
    :class:`SimservEmulator`'s."""
    async with SimservEmulator(host=host, port=port, **options) as emulator:
        await emulator.serve_forever()

"""A Weiss Technik / Vötsch climate chamber driven over SIMSERV (TCP, port 2049)."""

from __future__ import annotations

import math

from cellbench_sdk import (
    BadReply,
    ChamberState,
    ClimateChamber,
    Clock,
    DeviceError,
    OutOfRange,
    TcpLineTransport,
    WhileOpen,
)
from cellbench_simserv.protocol import (
    ENCODING,
    HUMIDITY,
    MANUAL_OPERATION,
    MESSAGE_ALARM,
    OK,
    SEPARATOR,
    STATUS_ALARM,
    STATUS_RUNNING,
    TEMPERATURE,
    TERMINATOR,
    Command,
    describe_code,
    encode,
    format_number,
)
from cellbench_simserv.settings import SimservSettings


class SimservError(DeviceError):
    """The controller answered a command with an error code."""

    def __init__(self, device: str, command: Command, code: int) -> None:
        super().__init__(device, f"command {command.describe} refused with code "
                                 f"{describe_code(code)}")
        self.command = command
        self.code = code


class ChamberAlarm(DeviceError):
    """The controller reports an active alarm; ``alarms`` are its messages' numbers and texts."""

    def __init__(self, device: str, status: int, alarms: list[tuple[int, str]]) -> None:
        listed = "; ".join(f"message {number}: {text}" for number, text in alarms)
        super().__init__(device, f"alarm (status {status}): {listed or 'no alarm message found'}")
        self.status = status
        self.alarms = alarms


def create_chamber(settings: SimservSettings) -> SimservChamber:
    """The chamber that ``settings`` describe, with humidity control or without."""
    return SimservHumidityChamber(settings) if settings.humidity else SimservChamber(settings)


class SimservChamber(ClimateChamber):
    """One chamber of a SIMSERV controller, temperature only.

    ``close()`` leaves the chamber conditioning as it was (the cells stay at temperature);
    ``stop()`` stops it.
    """

    def __init__(self, settings: SimservSettings) -> None:
        if settings.humidity and not self.has_humidity:
            raise ValueError(f"{type(self).__name__} has no humidity control; use create_chamber")
        self.settings = settings
        self.name = f"simserv {settings.host}:{settings.port} chamber {settings.chamber}"
        self._io = TcpLineTransport(
            settings.host, settings.port, connect_timeout=settings.connect_timeout_s,
            name=self.name, timeout=settings.timeout_s, read_termination=TERMINATOR,
            write_termination=TERMINATOR, encoding=ENCODING)
        self._clock = WhileOpen[Clock](self)

    async def open(self, clock: Clock) -> None:
        await self._io.open()
        try:
            await self._status()  # the controller answers, for this chamber index
        except BaseException:
            await self._io.close()
            raise
        self._clock.set(clock)

    async def close(self) -> None:
        self._clock.clear()
        await self._io.close()

    async def set_temperature(self, celsius: float) -> None:
        self._clock.get()
        s = self.settings
        _check_range(self.name, "temperature", celsius, s.temperature_min_c,
                     s.temperature_max_c, "°C")
        await self._query(Command.SET_SETPOINT, str(TEMPERATURE), format_number(celsius))

    async def start(self) -> None:
        self._clock.get()
        await self._query(Command.SET_DIGITAL_OUTPUT, str(MANUAL_OPERATION), "1")

    async def stop(self) -> None:
        self._clock.get()
        await self._query(Command.SET_DIGITAL_OUTPUT, str(MANUAL_OPERATION), "0")

    async def read(self) -> ChamberState:
        """The chamber's state; an active alarm raises :class:`ChamberAlarm` instead."""
        clock = self._clock.get()
        status = await self._status()
        if status & STATUS_ALARM:
            raise ChamberAlarm(self.name, status, await self._alarms())
        temperature = await self._value(Command.READ_ACTUAL, TEMPERATURE)
        setpoint = await self._value(Command.READ_SETPOINT, TEMPERATURE)
        humidity = setpoint_humidity = None
        if self.has_humidity:
            humidity = await self._value(Command.READ_ACTUAL, HUMIDITY)
            setpoint_humidity = await self._value(Command.READ_SETPOINT, HUMIDITY)
        return ChamberState(time_s=clock.now(), temperature_c=temperature, setpoint_c=setpoint,
                            running=bool(status & STATUS_RUNNING), humidity_pct=humidity,
                            setpoint_humidity_pct=setpoint_humidity)

    async def _query(self, command: Command, *arguments: str) -> list[str]:
        """Send ``command`` and return the fields of its reply after the return code."""
        reply = await self._io.query(encode(command, self.settings.chamber, *arguments))
        # Some controllers end replies with CR LF: the LF then leads the next line.
        fields = reply.lstrip("\n").split(SEPARATOR)
        try:
            code = int(fields[0])
        except ValueError:
            raise BadReply(self.name, f"command {command.describe}: reply {reply!r} does not "
                                      f"start with a return code") from None
        if code != OK:
            raise SimservError(self.name, command, code)
        return fields[1:]

    async def _single(self, command: Command, *arguments: str) -> str:
        """The one field that ``command`` answers."""
        fields = await self._query(command, *arguments)
        if len(fields) != 1:
            raise BadReply(self.name, f"command {command.describe}: expected one value, "
                                      f"got {fields!r}")
        return fields[0]

    async def _integer(self, command: Command, *arguments: str) -> int:
        text = await self._single(command, *arguments)
        try:
            return int(text)
        except ValueError:
            raise BadReply(self.name, f"command {command.describe}: {text!r} is not an "
                                      f"integer") from None

    async def _value(self, command: Command, variable: int) -> float:
        text = await self._single(command, str(variable))
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise BadReply(self.name, f"command {command.describe}: {text!r} is not a number")
        return value

    async def _status(self) -> int:
        return await self._integer(Command.STATUS)

    async def _alarms(self) -> list[tuple[int, str]]:
        """The numbers and texts of the active alarm messages among the first
        ``alarm_messages``."""
        alarms: list[tuple[int, str]] = []
        if not self.settings.alarm_messages:
            return alarms
        count = min(await self._integer(Command.MESSAGE_COUNT), self.settings.alarm_messages)
        for number in range(1, count + 1):
            n = str(number)
            if (await self._integer(Command.MESSAGE_STATUS, n) == 1
                    and await self._integer(Command.MESSAGE_TYPE, n) & MESSAGE_ALARM):
                alarms.append((number, await self._single(Command.MESSAGE_TEXT, n)))
        return alarms


class SimservHumidityChamber(SimservChamber):
    """A chamber of a SIMSERV controller that controls relative humidity as well."""

    has_humidity = True

    async def set_humidity(self, percent: float) -> None:
        self._clock.get()
        s = self.settings
        _check_range(self.name, "humidity", percent, s.humidity_min_pct, s.humidity_max_pct, "%")
        await self._query(Command.SET_SETPOINT, str(HUMIDITY), format_number(percent))


def _check_range(device: str, what: str, value: float, low: float, high: float,
                 unit: str) -> None:
    """Refuse a non-finite ``value`` or one outside ``low``..``high`` before anything is sent."""
    if not (math.isfinite(value) and low <= value <= high):
        raise OutOfRange(device, f"{what} setpoint {value!r} {unit} is outside "
                                 f"{low:g}..{high:g} {unit}")

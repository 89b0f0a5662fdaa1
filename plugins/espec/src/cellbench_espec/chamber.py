"""An ESPEC climate chamber (P300 / SCP-220 controllers) over their ASCII protocol.

Each command is one line ending in CR LF, and each gets one reply line: a query's values, or
``OK: ...`` / ``NA: <reason>`` for a command. The protocol and what is not confirmed:
docs/chamber-espec.md.
"""

from __future__ import annotations

import math

from cellbench_espec.settings import EspecSettings
from cellbench_sdk import (
    BadReply,
    ChamberState,
    ClimateChamber,
    Clock,
    DeviceError,
    LineTransport,
    OutOfRange,
    WhileOpen,
    transport_from_url,
)

#: The operation states of MON? and MODE? in which the chamber conditions.
_RUNNING = ("CONSTANT", "RUN")


class ChamberAlarm(DeviceError):
    """The controller reports an alarm (MON? counts it, ALARM? names its codes)."""


class EspecChamber(ClimateChamber):
    """One ESPEC chamber without humidity control: temperature setpoint, CONSTANT / STANDBY."""

    virtual_time_ok = False

    def __init__(self, settings: EspecSettings) -> None:
        self.settings = settings
        self.name = f"espec@{settings.address or settings.port}"
        self._io: LineTransport = transport_from_url(
            settings.url, name=self.name, timeout=settings.timeout_s,
            read_termination="\r\n", write_termination="\r\n")
        self._clock = WhileOpen[Clock](self)
        # The setpoint range: the settings' one narrowed to the controller's limits at open().
        self._low_c = settings.min_c
        self._high_c = settings.max_c

    async def open(self, clock: Clock) -> None:
        await self._io.open()
        try:
            upper, lower = (await self._numbers("TEMP?", 4))[2:]
        except BaseException:
            await self._io.close()
            raise
        self._low_c = max(self.settings.min_c, lower)
        self._high_c = min(self.settings.max_c, upper)
        self._clock.set(clock)

    async def close(self) -> None:
        """Let go of the controller; the chamber keeps its mode (and the cells their
        temperature)."""
        self._clock.clear()
        await self._io.close()

    async def set_temperature(self, celsius: float) -> None:
        self._clock.get()
        if not (math.isfinite(celsius) and self._low_c <= celsius <= self._high_c):
            raise OutOfRange(self.name, f"{celsius} °C is outside {self._low_c:g}.."
                                        f"{self._high_c:g} °C")
        await self._command(f"TEMP, S{celsius:.1f}")

    async def start(self) -> None:
        self._clock.get()
        await self._command("MODE, CONSTANT")

    async def stop(self) -> None:
        self._clock.get()
        await self._command("MODE, STANDBY")

    async def read(self) -> ChamberState:
        clock = self._clock.get()
        monitor = await self._query("MON?")
        fields = monitor.split(",")
        if len(fields) != 4:
            raise BadReply(self.name, f"MON? answered {monitor!r}, not 4 fields")
        temperature = self._number("MON?", monitor, fields[0])
        mode = fields[2].strip()
        alarms = self._number("MON?", monitor, fields[3])
        if alarms:
            codes = (await self._query("ALARM?")).split(",")[1:]
            # No live reading in the text: the station takes a new text for a new fault.
            raise ChamberAlarm(self.name, f"alarm {', '.join(c.strip() for c in codes)}")
        setpoint = (await self._numbers("TEMP?", 4))[1]
        humidity, humidity_setpoint = await self._humidity(monitor, fields[1])
        return ChamberState(time_s=clock.now(), temperature_c=temperature, setpoint_c=setpoint,
                            running=mode.startswith(_RUNNING), humidity_pct=humidity,
                            setpoint_humidity_pct=humidity_setpoint)

    async def _humidity(self, monitor: str, field: str) -> tuple[float | None, float | None]:
        """The humidity of MON? and the setpoint of HUMI?; both None without humidity."""
        return None, None

    async def _query(self, command: str) -> str:
        """Send ``command``; its reply, which may not be a refusal."""
        reply = (await self._io.query(command)).strip()
        if reply.startswith("NA:"):
            raise self._refused(command, reply)
        return reply

    async def _command(self, command: str) -> None:
        """Send ``command``, which the controller must acknowledge with ``OK:``."""
        reply = await self._query(command)
        if not reply.startswith("OK:"):
            raise BadReply(self.name, f"{command!r} answered {reply!r}, not 'OK: ...'")

    async def _numbers(self, command: str, count: int) -> list[float]:
        """The reply to ``command``: ``count`` comma-separated numbers."""
        reply = await self._query(command)
        fields = reply.split(",")
        if len(fields) != count:
            raise BadReply(self.name, f"{command} answered {reply!r}, not {count} numbers")
        return [self._number(command, reply, field) for field in fields]

    def _number(self, command: str, reply: str, field: str) -> float:
        try:
            value = float(field)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise BadReply(self.name, f"{command} answered {reply!r}: {field!r} is no number")
        return value

    def _refused(self, command: str, reply: str) -> DeviceError:
        reason = reply[3:].strip()
        message = f"refused {command!r}: {reason}"
        if reason == "DATA OUT OF RANGE":
            return OutOfRange(self.name, message)
        return DeviceError(self.name, message)


class EspecHumidityChamber(EspecChamber):
    """One ESPEC chamber with humidity control (HUMI commands)."""

    has_humidity = True

    async def set_humidity(self, percent: float) -> None:
        self._clock.get()
        if not (math.isfinite(percent) and 0.0 <= percent <= 100.0):
            raise OutOfRange(self.name, f"{percent} % is outside 0..100 %")
        await self._command(f"HUMI, S{percent:.1f}")

    async def _humidity(self, monitor: str, field: str) -> tuple[float | None, float | None]:
        humidity = self._number("MON?", monitor, field)
        reply = await self._query("HUMI?")
        fields = reply.split(",")
        if len(fields) != 4:
            raise BadReply(self.name, f"HUMI? answered {reply!r}, not 4 fields")
        if fields[1].strip() == "OFF":
            return humidity, None
        return humidity, self._number("HUMI?", reply, fields[1])


def espec_chamber(settings: EspecSettings) -> EspecChamber:
    """The chamber the settings describe: with humidity control or without."""
    return EspecHumidityChamber(settings) if settings.humidity else EspecChamber(settings)

"""An emulated ESPEC controller (P300 / SCP-220 ASCII protocol) with a chamber behind it.

The chamber is a first-order thermal model: temperature (and humidity, when the chamber has it)
approaches the setpoint in CONSTANT mode, or the ambient in STANDBY / OFF, with a time constant,
the temperature no faster than a ramp limit. ``speed`` runs it faster than the wall clock.
:class:`Faults` makes it misbehave. Serve it on TCP (:func:`serve`, :meth:`EspecEmulator.start`)
or on a pseudo-terminal (:meth:`EspecEmulator.start_pty`) as a serial port.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cellbench_sdk.emulation import LineEmulator, LineFaults, ModelTime, approach

#: The alarm code the emulator reports for an open door (an emulator choice, see the docs).
DOOR_OPEN = 1
_SET = re.compile(r"^(TEMP|HUMI),\s*S(OFF|[-+]?\d+(?:\.\d+)?)$")
_MODE = re.compile(r"^MODE,\s*(CONSTANT|STANDBY|OFF)$")


@dataclass
class Faults(LineFaults):
    """How the emulator misbehaves (the line faults, and the controller's); change the fields
    while it runs."""

    refuse: str | None = None  # answer setpoint and mode commands with "NA:<refuse>"
    door_open: bool = False  # alarm DOOR_OPEN in MON? and ALARM?
    alarms: list[int] = field(default_factory=list)  # further active alarm codes


class EspecEmulator(LineEmulator):
    """The controller and its chamber; one instance may serve several connections, over TCP
    (a serial server's port) and pseudo-terminals."""

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
        super().__init__(reply_terminator=b"\r\n")
        self.faults: Faults = Faults()
        self.temperature_c, self.humidity_pct = ambient_c, ambient_pct
        self.setpoint_c = ambient_c
        self.setpoint_pct: float | None = ambient_pct if humidity else None
        self.mode = "STANDBY"
        self._time = ModelTime(speed, clock)

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


async def serve(host: str, port: int, **options: Any) -> None:
    """Serve an emulated ESPEC controller on ``host:port`` until cancelled; ``options`` as for
    :class:`EspecEmulator`."""
    await EspecEmulator(**options).serve_forever(host, port)

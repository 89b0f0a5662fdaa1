"""The OSI device scpi-logger: simulated signals (replace with your device).

Today this is a simulation held in memory, so that the conformance tests pass from the start: a
temperature to read and a setpoint to write. Replace it with your device's signals, keeping what
the comments call the contract.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from cellbench_sdk import (
    Clock,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
    WhileOpen,
)

from cellbench_scpi_logger.settings import ScpiLoggerSettings

# The signals: names become aux columns of every sample and can be used in end conditions and
# safety limits, so choose short, lowercase names with the unit in them.
TEMPERATURE = "temperature_c"
SETPOINT = "setpoint_c"
SIGNALS = (
    SignalInfo(TEMPERATURE, "°C", description="the simulated temperature"),
    SignalInfo(SETPOINT, "°C", writable=True, description="a value a plan can set"),
)


class ScpiLoggerDevice(OsiDevice):
    """One scpi-logger device."""

    # The contract: True only for simulators, which may run on a virtual clock. A device of
    # real hardware sets False.
    virtual_time_ok = True

    def __init__(self, settings: ScpiLoggerSettings) -> None:
        # The contract: the constructor only stores settings; the device is reached in open().
        self.settings = settings
        # Shown in logs and alarms: say which device (a bus and node id, a port).
        self.name = "scpi-logger"
        # The contract: calls on a device that is not open raise DeviceConnectionError;
        # WhileOpen holds what the device has while open and refuses .get() otherwise.
        self._clock = WhileOpen[Clock](self)
        self._setpoint = settings.ambient_c

    @property
    def signals(self) -> Sequence[SignalInfo]:
        return SIGNALS

    async def open(self, clock: Clock) -> None:
        # Connect here; blocking calls belong on a cellbench_sdk.DeviceWorker. A device that
        # cannot be reached raises DeviceConnectionError.
        self._clock.set(clock)

    async def close(self) -> None:
        # The contract: release the device; safe to call twice and before open().
        self._clock.clear()

    async def read(self) -> Mapping[str, Reading]:
        # The contract: a Reading of every read-only signal (writable ones where they can be read
        # back), stamped with the station clock's now(); a failed sensor reads NaN, and a device
        # that stops answering raises (never an old value as if it were new).
        now = self._clock.get().now()
        return {TEMPERATURE: Reading(self.settings.ambient_c, now),
                SETPOINT: Reading(self._setpoint, now)}

    async def write(self, signal: str, value: float) -> None:
        # The contract: read-only signals refuse writes with NotSupported; unknown signals and
        # non-finite values are refused with OutOfRange.
        self._clock.get()  # refused unless open
        if signal not in {info.name for info in SIGNALS}:
            raise OutOfRange(self.name, f"no signal {signal!r}")
        if signal != SETPOINT:
            raise NotSupported(self.name, f"{signal} is read-only")
        if not math.isfinite(value):
            raise OutOfRange(self.name, f"{signal}: {value} is not a number")
        self._setpoint = value

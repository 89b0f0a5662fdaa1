"""A simulated OSI device: a second temperature sensor, a settable heater and a pressure sensor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cellbench_sdk import (
    Clock,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
    WhileOpen,
)

TEMPERATURE = "temperature_c"
HEATER_POWER = "heater_power_w"
PRESSURE = "pressure_kpa"



class SimOsiSettings(BaseModel):
    """Settings of the simulated OSI device; its signals vary as slow sines from ``open``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    ambient_c: float = 25.0
    """Mean temperature of the sensor with the heater off (°C)."""
    temperature_amplitude_c: Annotated[float, Field(ge=0)] = 2.0
    """Amplitude of the temperature's sine (K)."""
    temperature_period_s: Annotated[float, Field(gt=0)] = 3600.0
    """Period of the temperature's sine (s)."""
    heater_max_w: Annotated[float, Field(gt=0)] = 50.0
    """Highest heater power that may be written (W)."""
    thermal_resistance_k_per_w: Annotated[float, Field(ge=0)] = 0.5
    """Temperature rise of the sensor per watt of heater power (K/W)."""
    pressure_kpa: Annotated[float, Field(gt=0)] = 101.325
    """Mean pressure (kPa)."""
    pressure_amplitude_kpa: Annotated[float, Field(ge=0)] = 0.5
    """Amplitude of the pressure's sine (kPa)."""
    pressure_period_s: Annotated[float, Field(gt=0)] = 86400.0
    """Period of the pressure's sine (s)."""


class SimOsiDevice(OsiDevice):
    """Signals computed from the clock: every reading carries the clock time of the read."""

    virtual_time_ok = True
    name = "sim-osi"

    def __init__(self, settings: SimOsiSettings | None = None) -> None:
        self.settings = settings or SimOsiSettings()
        self._clock = WhileOpen[Clock](self)
        self._t0 = 0.0
        self._heater_w = 0.0
        self._signals = (
            SignalInfo(TEMPERATURE, "°C", description="second temperature sensor"),
            SignalInfo(HEATER_POWER, "W", writable=True, description="heater power setpoint",
                       minimum=0.0, maximum=self.settings.heater_max_w),
            SignalInfo(PRESSURE, "kPa", description="barometric pressure"),
        )

    @property
    def signals(self) -> Sequence[SignalInfo]:
        return self._signals

    async def open(self, clock: Clock) -> None:
        self._clock.set(clock)
        self._t0 = clock.now()

    async def close(self) -> None:
        self._heater_w = 0.0
        self._clock.clear()

    async def read(self) -> Mapping[str, Reading]:
        now = self._clock.get().now()
        s = self.settings
        t = now - self._t0
        temperature = (
            s.ambient_c
            + s.temperature_amplitude_c * math.sin(2.0 * math.pi * t / s.temperature_period_s)
            + s.thermal_resistance_k_per_w * self._heater_w
        )
        pressure = s.pressure_kpa + s.pressure_amplitude_kpa * math.sin(
            2.0 * math.pi * t / s.pressure_period_s
        )
        return {
            TEMPERATURE: Reading(temperature, now),
            HEATER_POWER: Reading(self._heater_w, now),
            PRESSURE: Reading(pressure, now),
        }

    async def write(self, signal: str, value: float) -> None:
        self._clock.get()
        info = next((i for i in self._signals if i.name == signal), None)
        if info is None:
            names = ", ".join(i.name for i in self._signals)
            raise OutOfRange(self.name, f"no signal {signal!r} (signals: {names})")
        if not info.writable:
            raise NotSupported(self.name, f"signal {signal!r} is read-only")
        limit = self.settings.heater_max_w
        if not (math.isfinite(value) and 0.0 <= value <= limit):
            raise OutOfRange(self.name, f"{signal} must be 0..{limit} W, not {value!r}")
        self._heater_w = value

"""A simulated climate chamber: first-order temperature (and humidity) with a ramp-rate limit."""

from __future__ import annotations

import math
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellbench_sdk import ChamberState, ClimateChamber, Clock, OutOfRange, WhileOpen
from cellbench_sdk.emulation import approach


class SimChamberSettings(BaseModel):
    """Settings of a simulated climate chamber."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    ambient_c: float = 25.0
    """Room temperature: the start temperature, and where the chamber drifts when stopped (°C)."""
    temperature_min_c: float = -40.0
    """Lowest temperature setpoint (°C)."""
    temperature_max_c: float = 150.0
    """Highest temperature setpoint (°C)."""
    time_constant_s: Annotated[float, Field(gt=0)] = 300.0
    """Time constant of the approach to the setpoint (s)."""
    max_ramp_k_per_min: Annotated[float, Field(gt=0)] = 3.0
    """Fastest temperature change (K/min)."""
    has_humidity: bool = False
    """Whether the chamber controls relative humidity as well."""
    ambient_humidity_pct: Annotated[float, Field(ge=0, le=100)] = 40.0
    """Room relative humidity: the start value, and where the chamber drifts when stopped (%)."""
    humidity_time_constant_s: Annotated[float, Field(gt=0)] = 120.0
    """Time constant of the approach to the humidity setpoint (s)."""

    @model_validator(mode="after")
    def _temperature_range(self) -> Self:
        if self.temperature_min_c >= self.temperature_max_c:
            raise ValueError(
                f"temperature_min_c ({self.temperature_min_c} °C) must be below "
                f"temperature_max_c ({self.temperature_max_c} °C)"
            )
        return self


def create_chamber(settings: SimChamberSettings) -> SimChamber:
    """The simulated chamber that ``settings`` describe, with humidity control or without."""
    return SimHumidityChamber(settings) if settings.has_humidity else SimChamber(settings)


class SimChamber(ClimateChamber):
    """A chamber that approaches its setpoint while running and drifts to ambient when stopped.

    Its state advances on the clock whenever it is read or given a setpoint.
    """

    virtual_time_ok = True
    name = "sim-chamber"

    def __init__(self, settings: SimChamberSettings | None = None) -> None:
        self.settings = settings or SimChamberSettings()
        if self.settings.has_humidity and not self.has_humidity:
            raise ValueError(f"{type(self).__name__} has no humidity control; use create_chamber")
        s = self.settings
        self._clock = WhileOpen[Clock](self)
        self._t = 0.0
        self._running = False
        self._temperature = s.ambient_c
        self._setpoint = s.ambient_c
        self._humidity = s.ambient_humidity_pct
        self._setpoint_humidity = s.ambient_humidity_pct
        self._ramp: tuple[float, float] | None = None  # target and rate of a running ramp

    async def open(self, clock: Clock) -> None:
        self._clock.set(clock)
        self._t = clock.now()

    async def close(self) -> None:
        if self._clock.is_open:
            self._advance()
        self._running = False
        self._clock.clear()

    async def set_temperature(self, celsius: float) -> None:
        self._advance()
        s = self.settings
        if not (math.isfinite(celsius) and s.temperature_min_c <= celsius <= s.temperature_max_c):
            raise OutOfRange(
                self.name,
                f"temperature setpoint {celsius!r} °C is outside "
                f"{s.temperature_min_c}..{s.temperature_max_c} °C",
            )
        self._setpoint = celsius
        self._ramp = None

    async def ramp_temperature(self, celsius: float, kelvin_per_s: float) -> None:
        """Move the setpoint from the temperature the chamber has now to ``celsius`` at
        ``kelvin_per_s``, as a controller's ramp program does."""
        await self.set_temperature(celsius)
        if not (math.isfinite(kelvin_per_s) and kelvin_per_s > 0):
            raise OutOfRange(self.name, f"ramp rate {kelvin_per_s!r} K/s is not positive")
        self._setpoint = self._temperature
        self._ramp = (celsius, kelvin_per_s)

    async def start(self) -> None:
        self._advance()
        self._running = True

    async def stop(self) -> None:
        self._advance()
        self._running = False

    async def read(self) -> ChamberState:
        now = self._advance()
        return ChamberState(
            time_s=now,
            temperature_c=self._temperature,
            setpoint_c=self._setpoint,
            running=self._running,
            humidity_pct=self._humidity if self.has_humidity else None,
            setpoint_humidity_pct=self._setpoint_humidity if self.has_humidity else None,
        )

    def _advance(self) -> float:
        """Bring the state to the clock's present time and return that time."""
        now = self._clock.get().now()
        dt = now - self._t
        if dt > 0.0:
            s = self.settings
            if self._ramp is not None and self._running:
                target, rate = self._ramp
                gap = target - self._setpoint
                self._setpoint = target if abs(gap) <= rate * dt else (
                    self._setpoint + math.copysign(rate * dt, gap))
                if self._setpoint == target:
                    self._ramp = None
            target = self._setpoint if self._running else s.ambient_c
            self._temperature = approach(
                self._temperature, target, dt, s.time_constant_s, s.max_ramp_k_per_min / 60.0
            )
            if self.has_humidity:
                target_rh = self._setpoint_humidity if self._running else s.ambient_humidity_pct
                self._humidity = approach(
                    self._humidity, target_rh, dt, s.humidity_time_constant_s
                )
            self._t = now
        return now


class SimHumidityChamber(SimChamber):
    """A simulated chamber that controls relative humidity as well as temperature."""

    has_humidity = True

    async def set_humidity(self, percent: float) -> None:
        self._advance()
        if not (math.isfinite(percent) and 0.0 <= percent <= 100.0):
            raise OutOfRange(self.name, f"humidity setpoint {percent!r} % is outside 0..100 %")
        self._setpoint_humidity = percent

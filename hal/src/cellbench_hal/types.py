"""Value types exchanged between the core and device drivers.

All values are SI: V, A, W, Ω, s, °C. Current and power are positive when charging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class StepMode(StrEnum):
    """What a channel's output does during a step."""

    REST = "rest"  # open circuit, no current
    CC = "cc"  # constant current (``current_a``)
    CV = "cv"  # constant voltage (``voltage_v``), current limited to ``current_a`` if given
    CCCV = "cccv"  # constant current ``current_a`` until ``voltage_v``, then hold that voltage
    CP = "cp"  # constant power (``power_w``)
    CR = "cr"  # constant resistance load (``resistance_ohm``), discharging


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")


@dataclass(frozen=True, slots=True)
class Step:
    """A setpoint handed to a channel: the mode and the values the mode needs.

    The core evaluates end conditions; the channel only holds the setpoint until it is given the
    next one (or switched off).
    """

    mode: StepMode
    current_a: float | None = None
    voltage_v: float | None = None
    power_w: float | None = None
    resistance_ohm: float | None = None

    def __post_init__(self) -> None:
        for name in ("current_a", "voltage_v", "power_w", "resistance_ohm"):
            _finite(name, getattr(self, name))
        needed = {
            StepMode.REST: (),
            StepMode.CC: ("current_a",),
            StepMode.CV: ("voltage_v",),
            StepMode.CCCV: ("current_a", "voltage_v"),
            StepMode.CP: ("power_w",),
            StepMode.CR: ("resistance_ohm",),
        }[self.mode]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.mode.value} step needs {name}")
        resistance = self.resistance_ohm
        if self.mode is StepMode.CR and resistance is not None and resistance <= 0:
            raise ValueError("resistance_ohm must be positive")
        if self.mode is StepMode.CV and self.current_a is not None and self.current_a <= 0:
            raise ValueError("the current limit of a cv step must be positive")


REST = Step(StepMode.REST)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What one channel can do: its output ranges, used to validate plans before they run."""

    name: str
    voltage_min_v: float
    voltage_max_v: float
    current_max_a: float
    power_max_w: float = math.inf


@dataclass(slots=True)
class SampleBatch:
    """Measurements from a channel driver: one row per sample, columns as numpy arrays.

    ``channel`` holds the driver's own channel index (0-based); ``time_s`` the clock time of each
    measurement. ``aux`` carries additional named columns (for example a second temperature).
    A driver returns rows in time order per channel.
    """

    channel: IntArray
    time_s: FloatArray
    voltage_v: FloatArray
    current_a: FloatArray
    temperature_c: FloatArray
    aux: dict[str, FloatArray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.channel)


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """A named signal of an OSI device."""

    name: str
    unit: str
    writable: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of a signal and the clock time it was measured at."""

    value: float
    time_s: float


@dataclass(frozen=True, slots=True)
class ChamberState:
    """What a climate chamber reports."""

    time_s: float
    temperature_c: float
    setpoint_c: float
    running: bool
    humidity_pct: float | None = None
    setpoint_humidity_pct: float | None = None

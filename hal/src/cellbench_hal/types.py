"""Value types exchanged between the core and device drivers.

All values are SI: V, A, W, Ω, s, °C. Current and power are positive when charging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

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
    PROFILE = "profile"  # follow ``profile`` over step time (ramps, drive cycles)


class ProfileQuantity(StrEnum):
    """What a profile sets: a current (A), a power (W) or a voltage (V)."""

    CURRENT = "current"
    POWER = "power"
    VOLTAGE = "voltage"


@dataclass(frozen=True, slots=True)
class Profile:
    """A setpoint that follows a table over step time: ``value[k]`` at ``time_s[k]`` seconds
    after the step began, linear in between (with ``hold``, each value holds until the next
    point). After the last point the last value holds. ``time_s`` starts at 0 and rises."""

    quantity: ProfileQuantity
    time_s: tuple[float, ...]
    value: tuple[float, ...]
    hold: bool = False
    # The table as arrays, and the integral of the setpoint at each point (for means).
    _t: FloatArray = field(init=False, repr=False, compare=False)
    _v: FloatArray = field(init=False, repr=False, compare=False)
    _slope: FloatArray = field(init=False, repr=False, compare=False)
    _integral: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = np.array(self.time_s, dtype=np.float64)
        v = np.array(self.value, dtype=np.float64)
        if not len(t) or len(t) != len(v):
            raise ValueError("a profile needs as many values as times, and at least one")
        if not (np.isfinite(t).all() and np.isfinite(v).all()):
            raise ValueError("a profile's times and values must be finite numbers")
        if t[0] != 0.0 or (np.diff(t) <= 0).any():
            raise ValueError("a profile's times must start at 0 and rise")
        slope = np.zeros(len(t))
        if not self.hold and len(t) > 1:
            slope[:-1] = np.diff(v) / np.diff(t)
        integral = np.concatenate(([0.0], np.cumsum(v[:-1] * np.diff(t)
                                                     + 0.5 * slope[:-1] * np.diff(t) ** 2)))
        for name, array in (("_t", t), ("_v", v), ("_slope", slope), ("_integral", integral)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @property
    def duration_s(self) -> float:
        """Time of the last point (s)."""
        return self.time_s[-1]

    def at(self, t: FloatArray) -> FloatArray:
        """The setpoint at each step time in ``t`` (s)."""
        if self.hold:
            held: FloatArray = self._v[self._point(t)]
            return held
        result: FloatArray = np.interp(t, self._t, self._v)
        return result

    def mean(self, t0: FloatArray, t1: FloatArray) -> FloatArray:
        """The mean setpoint over each interval from ``t0`` to ``t1`` (s); the value at ``t1``
        where the interval is empty."""
        span = t1 - t0
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (self._integral_at(t1) - self._integral_at(t0)) / span
        result: FloatArray = np.where(span > 0, mean, self.at(t1))
        return result

    def _point(self, t: FloatArray) -> IntArray:
        """Index of the point each time in ``t`` follows."""
        k: IntArray = np.clip(np.searchsorted(self._t, t, side="right") - 1, 0, len(self._t) - 1)
        return k

    def _integral_at(self, t: FloatArray) -> FloatArray:
        k = self._point(t)
        d = np.maximum(t - self._t[k], 0.0)
        last = k == len(self._t) - 1
        slope = np.where(last, 0.0, self._slope[k])
        result: FloatArray = self._integral[k] + self._v[k] * d + 0.5 * slope * d * d
        return result


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")


@dataclass(frozen=True, slots=True)
class StepLimits:
    """The safety limits a step runs under: the plan's and the battery's, the tighter of the
    two, as the runner checks them on every sample (``inf`` where there is none).

    The runner's check in software comes first; a driver whose instrument has protection of its
    own (over-voltage, over-current, compliance) programs these into it before the step starts,
    as a backstop that holds when the PC stalls. Currents are magnitudes.
    """

    voltage_max_v: float = math.inf
    voltage_min_v: float = -math.inf
    charge_current_max_a: float = math.inf
    discharge_current_max_a: float = math.inf

    def __post_init__(self) -> None:
        for name in ("voltage_max_v", "voltage_min_v", "charge_current_max_a",
                     "discharge_current_max_a"):
            if math.isnan(getattr(self, name)):
                raise ValueError(f"{name} must be a number or inf, not nan")
        if self.charge_current_max_a < 0 or self.discharge_current_max_a < 0:
            raise ValueError("current limits are magnitudes and must not be negative")


class EndQuantity(StrEnum):
    """What a step's own end condition may watch that a channel can follow by itself: its
    readings, and the step's time, charge and energy counted from when it was applied (names
    as in plans). Rates are taken between consecutive samples, as the core takes them."""

    VOLTAGE = "voltage"
    CURRENT = "current"
    ABS_CURRENT = "abs_current"
    POWER = "power"
    ABS_POWER = "abs_power"
    TEMPERATURE = "temperature"
    STEP_TIME = "step_time"
    STEP_AH = "step_ah"
    ABS_STEP_AH = "abs_step_ah"
    STEP_WH = "step_wh"
    ABS_STEP_WH = "abs_step_wh"
    STEP_CHARGE_AH = "step_charge_ah"
    STEP_DISCHARGE_AH = "step_discharge_ah"
    STEP_CHARGE_WH = "step_charge_wh"
    STEP_DISCHARGE_WH = "step_discharge_wh"
    DV_DT = "dv_dt"
    ABS_DV_DT = "abs_dv_dt"
    DTEMP_DT = "dtemp_dt"


@dataclass(frozen=True, slots=True)
class EndCondition:
    """``quantity >= threshold`` (``at_least``) or ``quantity <= threshold``, in SI units."""

    quantity: EndQuantity
    at_least: bool
    threshold: float


@dataclass(frozen=True, slots=True)
class Step:
    """A setpoint handed to a channel: the mode and the values the mode needs.

    The core evaluates end conditions; the channel only holds the setpoint until it is given the
    next one (or switched off). A profile step follows ``profile`` from the moment it is
    applied; a voltage profile limits the current to ``current_a`` if given, like CV.
    ``limits`` are the safety limits of the test the step belongs to (the runner sets them),
    for drivers that program them into the instrument's own protection.
    ``ends`` are the step's end conditions when every one of them is an :class:`EndQuantity`
    (groups: the step ends when all of one group hold; None when the core alone can tell
    when the step ends): a channel that computes steps in bulk, like a simulated one, may
    run up to them in one go. They are a hint; the core still decides.
    """

    mode: StepMode
    current_a: float | None = None
    voltage_v: float | None = None
    power_w: float | None = None
    resistance_ohm: float | None = None
    profile: Profile | None = None
    limits: StepLimits | None = None
    ends: tuple[tuple[EndCondition, ...], ...] | None = field(default=None, compare=False)

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
            StepMode.PROFILE: ("profile",),
        }[self.mode]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.mode.value} step needs {name}")
        resistance = self.resistance_ohm
        if self.mode is StepMode.CR and resistance is not None and resistance <= 0:
            raise ValueError("resistance_ohm must be positive")
        limited = self.mode is StepMode.CV or (
            self.profile is not None and self.profile.quantity is ProfileQuantity.VOLTAGE)
        if limited and self.current_a is not None and self.current_a <= 0:
            what = "cv step" if self.mode is StepMode.CV else "voltage profile"
            raise ValueError(f"the current limit of a {what} must be positive")


REST = Step(StepMode.REST)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What one channel can do: its output ranges, used to validate plans before they run."""

    name: str
    voltage_min_v: float
    voltage_max_v: float
    current_max_a: float
    power_max_w: float = math.inf


class OutputRanges(Protocol):
    """What a channel's output can do: a :class:`ChannelInfo`, or a driver's own record of it."""

    @property
    def voltage_min_v(self) -> float: ...
    @property
    def voltage_max_v(self) -> float: ...
    @property
    def current_max_a(self) -> float: ...
    @property
    def power_max_w(self) -> float: ...


_USES_CURRENT = frozenset({StepMode.CC, StepMode.CV, StepMode.CCCV})
_USES_VOLTAGE = frozenset({StepMode.CV, StepMode.CCCV})


def step_beyond(step: Step, ranges: OutputRanges) -> str:
    """What in ``step`` lies beyond ``ranges`` ("current 6 A is beyond ±5 A"), for a driver's
    :class:`~cellbench_hal.errors.OutOfRange`; empty when nothing does. A profile is judged by
    its extremes."""
    current = step.current_a if step.mode in _USES_CURRENT else None
    voltage = step.voltage_v if step.mode in _USES_VOLTAGE else None
    power = step.power_w if step.mode is StepMode.CP else None
    if step.profile is not None:
        values = step.profile.value
        if step.profile.quantity is ProfileQuantity.VOLTAGE:
            voltage = min(values) if min(values) < ranges.voltage_min_v else max(values)
        elif step.profile.quantity is ProfileQuantity.CURRENT:
            current = max(values, key=abs)
        else:
            power = max(values, key=abs)
    r = ranges
    if current is not None and abs(current) > r.current_max_a:
        return f"current {current} A is beyond ±{r.current_max_a} A"
    if voltage is not None and not r.voltage_min_v <= voltage <= r.voltage_max_v:
        return f"voltage {voltage} V is outside {r.voltage_min_v}..{r.voltage_max_v} V"
    if power is not None and abs(power) > r.power_max_w:
        return f"power {power} W is beyond ±{r.power_max_w} W"
    return ""


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
    """A named signal of an OSI device, in ``unit``.

    A writable signal may give the range a write must stay within (``minimum``, ``maximum``, in
    ``unit``; None: unbounded on that side): plans and the station file are checked against it
    before a test starts, and the device still refuses a value beyond it with ``OutOfRange``.
    """

    name: str
    unit: str
    writable: bool = False
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None


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
    #: What the controller reports as wrong ("door open", "alarm 12: ..."); empty when all is
    #: well. A fault ends or pauses the tests inside, by the station's ``on_fault``. The same
    #: fault must read the same from tick to tick (no live readings in it): a new text is a
    #: new fault, with a new alarm.
    fault: str = ""

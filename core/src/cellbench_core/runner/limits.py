"""Safety limits as vectorised bounds: each limit an upper bound on a signed reading.

The plan's and the battery's limits become one row of bounds per test (the tighter of the two,
or the battery's with the plan's offset); the tick compares every sample of every channel with
them at once (tick.process). What lies beyond a bound is said here, once, for a setpoint that
would cross it (:func:`beyond_limits`) and for a reading that did (:func:`limit_message`).
"""

from __future__ import annotations

import math

import numpy as np

from cellbench_core.plan.model import Limit, SafetyLimits
from cellbench_core.storage import BatteryRecord
from cellbench_hal import ProfileQuantity, Step, StepMode
from cellbench_hal.types import FloatArray

#: The safety limits as columns of upper bounds on signed readings (v, -v, i, -i, T, -T): the
#: limit's name, the sign that turns its value into the bound, the sign that turns the signed
#: reading back into the reading, and the unit. The current limit has a column per direction
#: (batteries register one for each).
LIMITS = (("voltage_max", 1.0, 1.0, "V"), ("voltage_min", -1.0, -1.0, "V"),
           ("current_max", 1.0, 1.0, "A"), ("current_max", 1.0, -1.0, "A"),
           ("temperature_max", 1.0, 1.0, "°C"), ("temperature_min", -1.0, -1.0, "°C"))


def limit_bounds(limits: SafetyLimits, battery: BatteryRecord | None,
                  capacity: float | None) -> tuple[list[float], list[float]]:
    """Each LIMITS column's upper bound on the signed reading, and its delay (s)."""
    b = battery
    registered = (None,) * 6 if b is None else (
        b.voltage_max_v, b.voltage_min_v, b.current_max_charge_a, b.current_max_discharge_a,
        b.temperature_max_c, None)
    bounds, delays = [], []
    for (name, sign, _, _), own in zip(LIMITS, registered, strict=True):
        limit: Limit | None = getattr(limits, name)
        delay, value = 0.0, own
        if limit is not None and limit.battery:
            if own is None:
                raise ValueError(f"limits.{name} is written against the battery, but "
                                 + ("the test has no battery" if b is None else
                                    f"battery {b.name!r} has no registered {name}"))
            value = own + (limit.value.resolve(capacity) if limit.value else 0.0)
            delay = limit.delay_s
        elif limit is not None and limit.value is not None:
            try:
                mine = abs(limit.value.resolve(capacity)) if name == "current_max" else (
                    limit.value.resolve(capacity))
            except ValueError as err:
                raise ValueError(f"limits.{name}: {err}; give a battery or the plan's "
                                 "capacity") from None
            if own is None or sign * mine <= sign * own:  # the plan's is the tighter
                value, delay = mine, limit.delay_s
        bounds.append(math.inf if value is None else sign * value)
        delays.append(delay)
    for high, low, unit in ((0, 1, "V"), (4, 5, "°C")):
        if -bounds[low] >= bounds[high]:
            raise ValueError(f"{LIMITS[low][0]} {-bounds[low]:g} {unit} is not below "
                             f"{LIMITS[high][0]} {bounds[high]:g} {unit}")
    return bounds, delays


def extremes(step: Step) -> tuple[list[float], list[float]]:
    """The voltages and currents ``step`` may set, at their extremes (current limits included)."""
    voltages = [] if step.voltage_v is None else [step.voltage_v]
    currents = [] if step.current_a is None else [step.current_a]
    if step.profile is not None and step.profile.quantity is ProfileQuantity.VOLTAGE:
        voltages += [min(step.profile.value), max(step.profile.value)]
    elif step.profile is not None and step.profile.quantity is ProfileQuantity.CURRENT:
        currents += [min(step.profile.value), max(step.profile.value)]
    return voltages, currents


def beyond_limits(step: Step, bounds: list[float]) -> str:
    """What of ``step``'s setpoint lies beyond the safety limits, or ''."""
    voltages, currents = extremes(step)
    if step.mode is StepMode.CV or (step.profile is not None
                                    and step.profile.quantity is ProfileQuantity.VOLTAGE):
        currents = currents[1:] if step.current_a is not None else currents  # only a limit
    checks = [(0, v) for v in voltages] + [(1, -v) for v in voltages]
    checks += [(2, i) if i > 0 else (3, -i) for i in currents]
    for column, reading in checks:
        if reading > bounds[column]:
            reading_sign, unit = LIMITS[column][2:]
            return (f"the setpoint {reading_sign * reading:g} {unit} is beyond the safety limit "
                    f"{_limit_text(column, bounds[column])}")
    return ""


def limit_message(v: float, i: float, temp: float, bound: FloatArray, delay: FloatArray) -> str:
    """Why the readings ``v``, ``i``, ``temp`` tripped a channel with the bounds and delays of
    its row: the first limit they are beyond, or the reading that is not a number."""
    for what, value in (("voltage", v), ("current", i), ("temperature", temp)):
        if not math.isfinite(value) and (what != "temperature" or np.isfinite(bound[4:]).any()):
            return f"safety limit: the {what} reading is {value} (not a number)"
    signed = (v, -v, i, -i, temp, -temp)
    for column, (_, _, reading_sign, unit) in enumerate(LIMITS):
        if signed[column] > bound[column]:
            held = f" for {delay[column]:g} s" if delay[column] else ""
            return (f"safety limit {_limit_text(column, bound[column])}: measured "
                    f"{reading_sign * signed[column]:.4g} {unit}{held}")
    return "safety limit"


def _limit_text(column: int, bound: float) -> str:
    """A LIMITS column's bound as the limit people know: ``voltage_max 4.2 V``."""
    name, bound_sign, _, unit = LIMITS[column]
    return f"{name} {bound_sign * bound:g} {unit}"

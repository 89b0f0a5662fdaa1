"""Safety limits as vectorised bounds: each limit an upper bound on a signed reading (a limit
on a device's signal too: its ``max``, and its ``min`` as a bound on the negated reading).

The plan's and the battery's limits become one row of bounds per test (the tighter of the two,
or the battery's with the plan's offset); the tick compares every sample of every channel with
them at once (tick.process). What lies beyond a bound is said here, once, for a setpoint that
would cross it (:func:`beyond_limits`) and for a reading that did (:func:`limit_message`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from cellbench_core.plan.model import Limit, SafetyLimits
from cellbench_core.runner.conditions import QUANTITY_COLUMN
from cellbench_core.runner.records import SignalPlan
from cellbench_core.storage import BatteryRecord
from cellbench_hal import ProfileQuantity, Step, StepMode
from cellbench_hal.types import FloatArray

BoolArray = npt.NDArray[np.bool_]

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


def limit_message(v: float, i: float, temp: float, bound: FloatArray, delay: FloatArray,
                  held: FloatArray) -> str:
    """Why the readings ``v``, ``i``, ``temp`` tripped a channel with the bounds and delays of
    its row, ``held`` being how long each LIMITS column's reading has been beyond its bound
    (NaN: it is not): the first limit they are beyond long enough, or the reading that is not
    a number; '' if none of them tripped."""
    for what, value in (("voltage", v), ("current", i), ("temperature", temp)):
        if not math.isfinite(value) and (what != "temperature" or np.isfinite(bound[4:]).any()):
            return f"safety limit: the {what} reading is {value} (not a number)"
    signed = (v, -v, i, -i, temp, -temp)
    for column, (_, _, reading_sign, unit) in enumerate(LIMITS):
        if signed[column] > bound[column] and held[column] >= delay[column]:
            held_text = f" for {delay[column]:g} s" if delay[column] else ""
            return (f"safety limit {_limit_text(column, bound[column])}: measured "
                    f"{reading_sign * signed[column]:.4g} {unit}{held_text}")
    return ""


def signals_tripped(values: FloatArray, bound: FloatArray, delay: FloatArray,
                    since: FloatArray, t: FloatArray) -> tuple[BoolArray, FloatArray]:
    """Which rows trip a limit on a signal, from the signals' ``values`` (rows by signal slot)
    and the rows' upper ``bound`` on each reading and on its negative (pairs by slot), their
    ``delay``, and ``since`` when each has been beyond its bound (NaN: it is not), which comes
    back updated. A signal that is missing or not a number is beyond every bound it has: it
    trips too, after the delay."""
    signed = np.repeat(values, 2, axis=1)
    signed[:, 1::2] *= -1.0
    beyond = (signed > bound) | (~np.isfinite(signed) & np.isfinite(bound))
    since = np.where(beyond, np.where(np.isnan(since), t[:, None], since), np.nan)
    tripped = np.any(beyond & (t[:, None] - since >= delay), axis=1)
    return np.asarray(tripped, dtype=bool), since


def signal_limit_message(signals: SignalPlan, values: FloatArray, bound: FloatArray,
                         delay: FloatArray, held: FloatArray) -> str:
    """Why a channel tripped a limit on a signal: the first signal of its plan (of
    ``signals``) beyond a bound for its delay (``held``: how long each has been), with the
    device, the reading and the bound in the signal's own unit; '' if none did. ``values``
    are the row's quantities, signals included."""
    for name, column in signals.columns.items():
        slot = column - len(QUANTITY_COLUMN)
        value, unit = float(values[column]), signals.units.get(name, "")
        for side, (word, sign) in enumerate((("max", 1.0), ("min", -1.0))):
            k = 2 * slot + side
            if not (np.isfinite(bound[k]) and held[k] >= delay[k]):
                continue
            unit_text = f" {unit}" if unit else ""
            held_text = f" for {delay[k]:g} s" if delay[k] else ""
            limit = f"safety limit {name} {word} {sign * bound[k]:g}{unit_text} (device " \
                    f"{name.split('.', 1)[0]!r})"
            if not math.isfinite(value):
                return f"{limit}: no reading (missing or not a number){held_text}"
            return f"{limit}: measured {value:.4g}{unit_text}{held_text}"
    return ""


def _limit_text(column: int, bound: float) -> str:
    """A LIMITS column's bound as the limit people know: ``voltage_max 4.2 V``."""
    name, bound_sign, _, unit = LIMITS[column]
    return f"{name} {bound_sign * bound:g} {unit}"

"""One simulated channel that computes whole steps in bulk: what ``cellbench plan estimate`` runs.

The runner still runs the plan: it applies every step, evaluates every end condition and safety
limit on the samples it gets, counts cycles and charge. What changes is how often it is asked:
instead of one sample per sample period, :meth:`BulkSimChannel.measure` runs the cell ahead
under the step's setpoint in large internal steps until the step's own end conditions (handed
over in :attr:`cellbench_hal.Step.ends`) or the test's limits would hold at a sample time, finds
the first such sample time by bisection, moves the (virtual) clock there, and returns:

* a sample one period before it, whose current is the mean current since the sample before, so
  the runner's charge counters (current × time between samples) add up to the cell's charge;
* the sample at it, one period after the previous one, as a replay of every period would give
  it (its current, voltage and rate over that period).

Internal steps are as long as keeps the change of the current over one below ``tolerance``
(a CV taper, a CC-CV's transition; one that changed more is done again, shorter), and that
of the voltage below ``tolerance`` × 0.5 V (the knees near empty and full), and grow
from one period at the start of a step under load (where the cell's resistances change
fastest); a rest is exact for any length. Samples fall on the runner's grid (multiples of
``period_s`` from the clock's time at the start), so the step ends on the very sample time a
replay would end it.

A profile step runs one sample period per internal step (its setpoint is the profile's mean
over each, as on :class:`~cellbench_sim.channel.SimChannels`), still up to its end in one
:meth:`measure`. A step whose end the channel cannot follow (``ends`` None: the cycle's or the
test's totals, a device's signal, a chamber or an external step) runs one sample period per
:meth:`measure`, like :class:`~cellbench_sim.channel.SimChannels`. The clock moves with the
channel, so this driver only runs alone on a virtual clock, one channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import numpy as np
from pydantic import Field

from cellbench_sdk import REST, Clock, EndCondition, EndQuantity, SampleBatch, Step, StepMode
from cellbench_sdk.cell import Mode, SingleCell
from cellbench_sim.channel import SimChannels, SimChannelSettings

#: The longest internal step (s): a rest is exact at any length; under current, the cell's
#: resistances and temperature are taken at the start of an internal step.
_LONGEST_STEP_S = {StepMode.REST: 86_400.0}
_LONGEST_LOADED_STEP_S = 600.0
#: Simulated time one :meth:`measure` covers at most before it hands the runner a sample (s).
_HORIZON_S = 7 * 86_400.0

#: What the change of the voltage over an internal step is measured against (as the current's
#: against itself): under a constant current the cell's resistances, taken at the start of
#: an internal step, change fastest where the voltage does (near empty and full).
_VOLTAGE_SCALE_V = 0.5
#: How many times longer than the one before an internal step may be.
_GROWTH = 4.0



class BulkSimSettings(SimChannelSettings):
    """Settings of a bulk-computing simulated channel: one cell, and the runner's period."""

    count: Annotated[int, Field(ge=1, le=1)] = 1
    """One channel: the channel moves the clock."""
    period_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    """The runner's sample period (s): samples fall on its grid."""
    tolerance: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    """Largest relative change of the current over one internal step (and change of the
    voltage, per 0.5 V)."""
    trace: bool = False
    """Also return a sample at the end of every internal step (for plots), not only at the
    ends of steps."""


class _Reading:
    """The cell's state at a sample time, and the step's counters there."""

    __slots__ = ("counts", "i", "rate_temp", "rate_v", "t", "temp", "v")

    def __init__(self, t: float, v: float, i: float, temp: float, counts: list[float]) -> None:
        self.t, self.v, self.i, self.temp, self.counts = t, v, i, temp, counts
        self.rate_v = self.rate_temp = math.nan  # over the last period (NaN: none in the step)


class BulkSimChannel(SimChannels):
    """One simulated channel that runs whole steps ahead in bulk (see the module)."""

    name = "sim-bulk"

    def __init__(self, settings: BulkSimSettings | None = None) -> None:
        self.bulk = settings or BulkSimSettings()
        super().__init__(self.bulk)
        self._step = REST
        self._step_t0 = 0.0
        self._sampled = 0.0  # time of the last sample returned
        # Step counters: Ah, Wh, charge Ah, discharge Ah, charge Wh, discharge Wh.
        self._counts = [0.0] * 6
        self._last: _Reading | None = None  # the step's last reading (None: none yet)
        self._emitted = (0.0, 0.0)  # time and step Ah of the last sample returned
        self._cell = SingleCell.of(self.cells)  # the bank's one cell, computed in floats

    async def open(self, clock: Clock) -> None:
        await super().open(clock)
        self._sampled = clock.now()

    async def apply(self, channel: int, step: Step) -> None:
        await super().apply(channel, step)
        now = self._clock.get().now()
        self._advance(now)  # the whole (one-cell) bank at ``now``
        self._cell.load()
        self._step, self._step_t0 = step, now
        self._counts = [0.0] * 6
        self._last = None
        self._emitted = (now, 0.0)

    async def measure(self) -> SampleBatch:
        clock = self._clock.get()
        now = clock.now()
        p = self.bulk.period_s
        first = now if now > self._sampled + 1e-9 * p else self._sampled + p
        if first - self._t > p * (1 + 1e-9):  # the runner waited (never, alone on its clock)
            self._single(first - p - self._t)
        step = self._step
        readings = ([self._single(first - self._t)] if step.ends is None
                    else self._run_to_end(step))
        readings = [r for r in readings if r.t > self._sampled]
        last = readings[-1]
        self._cell.store(last.v, last.i)
        await clock.sleep_until(last.t)
        self._sampled = last.t
        # Each sample's current is the mean since the sample before: the runner's counters
        # (current times the time between samples) then add up to the cell's charge.
        currents = []
        t0, ah0 = self._emitted
        for r in readings:
            currents.append((r.counts[0] - ah0) * 3600.0 / (r.t - t0) if r.t > t0 else r.i)
            t0, ah0 = r.t, r.counts[0]
        self._emitted = (t0, ah0)
        n = len(readings)
        return SampleBatch(
            np.zeros(n, dtype=np.int64), np.array([r.t for r in readings]),
            np.array([r.v for r in readings]), np.array(currents),
            np.array([r.temp for r in readings]))

    # ---- the cell ----------------------------------------------------------------------------

    def _single(self, dt: float, mode: Mode | None = None) -> _Reading:
        """Advance the cell by ``dt`` under the step's setpoint (``mode`` instead of its own);
        the reading at the end, counted into the step's counters."""
        sp = self._setpoints
        own = int(sp.mode[0])
        if self._profiles:  # the setpoint of the profile over this update
            self._follow_profiles(np.full(1, self._t), self._t + dt)
        v, i, temp = self._cell.advance(dt, Mode(own) if mode is None else mode, sp,
                                        self._range)
        self._t += dt
        c = self._counts
        dah, dwh = i * dt / 3600.0, v * i * dt / 3600.0
        c[0] += dah
        c[1] += dwh
        if dah > 0:
            c[2] += dah
            c[4] += dwh
        else:
            c[3] -= dah
            c[5] -= dwh
        reading = _Reading(self._t, v, i, temp, list(c))
        last = self._last
        if last is not None and dt > 0:
            reading.rate_v = (v - last.v) / dt
            reading.rate_temp = (temp - last.temp) / dt
        self._last = reading
        return reading

    def _save(self) -> tuple[tuple[float, ...], float, list[float], _Reading | None]:
        return self._cell.state(), self._t, list(self._counts), self._last

    def _restore(self, saved: tuple[tuple[float, ...], float, list[float], _Reading | None]
                 ) -> None:
        state, self._t, counts, self._last = saved
        self._cell.restore(state)
        self._counts = list(counts)

    def _reach(self, periods: int, mode: Mode | None) -> tuple[_Reading | None, _Reading]:
        """Advance by ``periods`` sample periods: all but the last in one internal step, the
        last on its own (as a replay's sample would see it); both readings (None before)."""
        p = self.bulk.period_s
        before = self._single((periods - 1) * p, mode) if periods > 1 else self._last
        return before, self._single(p, mode)

    # ---- up to the step's end ----------------------------------------------------------------

    def _run_to_end(self, step: Step) -> list[_Reading]:
        """Readings after the last sample, up to the first sample time at which the step's end
        conditions or limits hold (or :data:`_HORIZON_S` later): the samples to return."""
        p = self.bulk.period_s
        start = self._t
        longest = max(p, _LONGEST_STEP_S.get(step.mode, _LONGEST_LOADED_STEP_S))
        # A profile's setpoint changes from period to period: it runs one period at a time.
        longest_periods = 1 if step.profile is not None else max(1, int(longest // p))
        # A CC-CV step charges at constant current until the voltage reaches its setpoint:
        # run it as CC until the sample that would go beyond, then as CC-CV.
        mode = Mode.CC if step.mode is StepMode.CCCV else None
        # A rest is exact at any length: its first internal step may reach its time condition
        # at once. Under load the first is one period: the next ones are sized by the change
        # over the one before.
        periods = max(1, min(longest_periods, self._periods_to_time(step))) if (
            step.mode is StepMode.REST) else 1
        trace: list[_Reading] = []
        tolerance = self.bulk.tolerance
        timed = self._periods_to_time(step) > 0

        def crosses(r: _Reading) -> bool:  # CC reaching a CC-CV step's voltage
            return mode is Mode.CC and (r.v - (step.voltage_v or 0.0)) * (
                step.current_a or 0.0) >= 0

        def stops(r: _Reading) -> bool:
            return crosses(r) or self._holds(step, r)

        while True:
            saved = self._save()
            last = self._last
            before, reading = self._reach(periods, mode)
            if stops(reading):
                self._restore(saved)
                k = self._first(periods, mode, stops, timed)
                before, reading = self._reach(k, mode)
                if not crosses(reading):
                    return self._ending(trace, before, reading)
                self._restore(saved)
                if k > 1:
                    before, reading = self._reach(k - 1, mode)
                    if self.bulk.trace:
                        trace.append(reading)
                mode, periods = None, 1
                continue
            # The next internal step's length: what makes the current change by a little
            # less than the tolerance, at most _GROWTH times this one's (this one done again
            # if it changed by more).
            change = 0.0 if last is None else max(
                abs(reading.i - last.i) / max(abs(last.i), abs(reading.i), 1e-12),
                abs(reading.v - last.v) / _VOLTAGE_SCALE_V)
            fitting = _GROWTH if change == 0.0 else min(_GROWTH, 0.8 * tolerance / change)
            if periods > 1 and change > tolerance:
                self._restore(saved)
                periods = max(1, int(periods * fitting))
                continue
            if self.bulk.trace:
                trace.append(reading)
            elif last is not None and (last.i > 0) != (reading.i > 0):
                # A sample where the current changes direction (a profile's regenerative
                # braking): the runner counts charge and discharge apart by the samples' signs.
                trace.append(last)
            if self._t - start >= _HORIZON_S:
                return self._ending(trace, before, reading)
            periods = max(1, min(longest_periods, int(periods * fitting)))

    def _first(self, periods: int, mode: Mode | None, holds: Callable[[_Reading], bool],
               timed: bool) -> int:
        """The fewest sample periods (1..``periods``) from the present state after which
        ``holds`` holds (it does after ``periods``); the state is left as it was. ``timed``:
        the step has a time condition, which may hold exactly after ``periods``."""
        saved = self._save()
        low, high = 0, periods
        if timed and high > 1:  # one probe tells
            _, reading = self._reach(high - 1, mode)
            self._restore(saved)
            if not holds(reading):
                return high
            high -= 1
        while high - low > 1:
            mid = (low + high) // 2
            _, reading = self._reach(mid, mode)
            self._restore(saved)
            if holds(reading):
                high = mid
            else:
                low = mid
        return high

    def _periods_to_time(self, step: Step) -> int:
        """Sample periods until the step's earliest time condition could hold (the first
        internal step need not be shorter), at least one; 0 without a time condition."""
        assert step.ends is not None
        times = [c.threshold for group in step.ends for c in group
                 if c.quantity is EndQuantity.STEP_TIME and c.at_least]
        if not times:
            return 0
        left = min(times) - (self._t - self._step_t0)
        return max(1, int(left // self.bulk.period_s))

    @staticmethod
    def _ending(trace: list[_Reading], before: _Reading | None, reading: _Reading
                ) -> list[_Reading]:
        """The samples to return: the trace, the reading a period before the last, the last."""
        samples = [r for r in trace if r.t < reading.t]
        if before is not None and before.t < reading.t and (not samples or
                                                           samples[-1].t < before.t):
            samples.append(before)
        samples.append(reading)
        return samples

    def _holds(self, step: Step, r: _Reading) -> bool:
        """Whether the step's end conditions or its limits hold at reading ``r``."""
        limits = step.limits
        if limits is not None and not (
                limits.voltage_min_v <= r.v <= limits.voltage_max_v
                and -limits.discharge_current_max_a <= r.i <= limits.charge_current_max_a):
            return True
        assert step.ends is not None
        return any(all(_meets(c, self._value(c.quantity, r)) for c in group)
                   for group in step.ends)

    def _value(self, quantity: EndQuantity, r: _Reading) -> float:
        if quantity is EndQuantity.STEP_TIME:
            return r.t - self._step_t0
        return _READ[quantity](r)


#: How each end quantity but the step time is read from a reading.
_READ: dict[EndQuantity, Callable[[_Reading], float]] = {
    EndQuantity.VOLTAGE: lambda r: r.v, EndQuantity.CURRENT: lambda r: r.i,
    EndQuantity.ABS_CURRENT: lambda r: abs(r.i), EndQuantity.POWER: lambda r: r.v * r.i,
    EndQuantity.ABS_POWER: lambda r: abs(r.v * r.i),
    EndQuantity.TEMPERATURE: lambda r: r.temp, EndQuantity.STEP_AH: lambda r: r.counts[0],
    EndQuantity.ABS_STEP_AH: lambda r: abs(r.counts[0]),
    EndQuantity.STEP_WH: lambda r: r.counts[1],
    EndQuantity.ABS_STEP_WH: lambda r: abs(r.counts[1]),
    EndQuantity.STEP_CHARGE_AH: lambda r: r.counts[2],
    EndQuantity.STEP_DISCHARGE_AH: lambda r: r.counts[3],
    EndQuantity.STEP_CHARGE_WH: lambda r: r.counts[4],
    EndQuantity.STEP_DISCHARGE_WH: lambda r: r.counts[5],
    EndQuantity.DV_DT: lambda r: r.rate_v, EndQuantity.ABS_DV_DT: lambda r: abs(r.rate_v),
    EndQuantity.DTEMP_DT: lambda r: r.rate_temp,
}


def _meets(condition: EndCondition, value: float) -> bool:
    """Whether ``value`` meets ``condition`` (NaN meets none, as in the core)."""
    if condition.at_least:
        return value >= condition.threshold
    return value <= condition.threshold

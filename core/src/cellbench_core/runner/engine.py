"""The runner: every channel follows its own plan, samples are handled in batches across channels.

One loop ticks at the sample period. Each tick asks every channel driver for its samples (all
drivers concurrently, each call under a timeout), then updates counters, checks safety limits and
end conditions for all channels at once with numpy, and hands the batch to the storage writer.
Only the rare events (a step ends, a limit trips, a device fails) drop into per-channel Python.
A single shared loop rather than one task per channel: at 10,000 channels one task each costs
about ten times as much (bench/bench_runner.py measures both).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from cellbench_core.events import Alarm, StepChanged, TestFinished, TestStarted, TestStatus
from cellbench_core.plan.model import Condition, Plan, Quantity, StepSpec, Value
from cellbench_core.runner.conditions import QUANTITY_COLUMN, ConditionTable
from cellbench_core.runner.program import Cursor, Program
from cellbench_core.storage import (
    BatteryRecord,
    Database,
    SampleRows,
    SampleWriter,
    StepRow,
    TestEnd,
    TestStart,
)
from cellbench_hal import ChannelDriver, ChannelInfo, Clock, DeviceError, Step, call_with_timeout
from cellbench_hal.types import FloatArray, IntArray

log = logging.getLogger(__name__)

_Q = QUANTITY_COLUMN


class RunError(ValueError):
    """A test cannot start: the plan does not fit the channel, battery or clock."""


@dataclass(frozen=True)
class ChannelRef:
    """A station channel: its station-wide number and where it lives (driver and local index)."""

    number: int
    driver: ChannelDriver
    driver_name: str
    local: int

    @property
    def name(self) -> str:
        """The channel's name in the database and in messages."""
        return str(self.number)

    @property
    def info(self) -> ChannelInfo:
        """The channel's ranges."""
        return self.driver.channels[self.local]


@dataclass(frozen=True)
class TestRequest:
    """Run ``plan`` on ``channel`` (for ``battery``, whose data sets C-rates and limits)."""

    channel: ChannelRef
    plan: Plan
    battery: BatteryRecord | None = None
    name: str = ""

    __test__ = False


@dataclass(frozen=True)
class TestOutcome:
    """How a test ended."""

    test_id: int
    channel: str
    status: TestStatus
    reason: str

    __test__ = False


@dataclass(frozen=True)
class ChannelStatus:
    """A channel's state for live displays."""

    channel: str
    test_id: int
    running: bool
    step: str
    step_no: int
    steps_total: int
    cycle: int
    test_time_s: float
    voltage_v: float
    current_a: float
    temperature_c: float
    step_ah: float
    total_ah: float
    total_wh: float
    outcome: TestOutcome | None


@dataclass
class _Run:
    """Per-channel bookkeeping touched only on events."""

    row: int
    request: TestRequest
    test_id: int
    cursor: Cursor
    steps: dict[int, _Resolved]  # instruction -> the step resolved for this battery
    step_text: str = ""
    step_no: int = 0
    step_start_seq: int = 1
    step_start_time: float = 0.0
    outcome: TestOutcome | None = None


#: A step resolved for one battery: the channel setpoint and the (condition, SI threshold) groups.
_Resolved = tuple[Step, list[list[tuple[Condition, float]]]]


def _resolve(value: Value | None, capacity: float | None) -> float | None:
    return None if value is None else value.resolve(capacity)


def _min(*values: float | None) -> float:
    present = [v for v in values if v is not None]
    return min(present) if present else math.inf


def _max(*values: float | None) -> float:
    present = [v for v in values if v is not None]
    return max(present) if present else -math.inf


class _NoHooks:
    """Stands in for the plugin hook relay when the runner runs without plugins (tests)."""

    def __getattr__(self, name: str) -> Any:
        return lambda **_: None


class Runner:
    """Runs test plans on channels until every one has ended."""

    def __init__(self, db: Database, writer: SampleWriter, clock: Clock, *,
                 sample_period_s: float = 1.0, hooks: Any = None, station: str = "station",
                 device_timeout_s: float = 5.0) -> None:
        if not (math.isfinite(sample_period_s) and sample_period_s > 0):
            raise RunError(f"sample period must be a positive number of seconds, "
                           f"not {sample_period_s!r}")
        self.db, self.writer, self.clock = db, writer, clock
        self.sample_period_s = sample_period_s
        self.hooks = hooks if hooks is not None else _NoHooks()
        self.station = station
        self.device_timeout_s = device_timeout_s
        self.ticks = 0
        self.overruns = 0  # ticks that started more than one period late (real time only)
        self.samples = 0
        self._runs: list[_Run] = []
        self._ended: list[TestEnd] = []  # tests ended this tick, recorded together
        self._stop: dict[int | None, str] = {}  # channel number (None: all) -> reason

    # ---- control -----------------------------------------------------------------------------

    def stop(self, channel: int | None = None, reason: str = "stopped by operator") -> None:
        """Ask to stop one channel's test (or all) at the next tick, output off."""
        self._stop[channel] = reason

    def snapshot(self) -> list[ChannelStatus]:
        """The state of every channel of this run, for live displays."""
        out = []
        for run in self._runs:
            r = run.row
            out.append(ChannelStatus(
                channel=run.request.channel.name, test_id=run.test_id,
                running=bool(self._active[r]), step=run.step_text,
                step_no=run.step_no, steps_total=run.cursor.program.steps_total,
                cycle=int(self._cycle[r]), test_time_s=float(self._last_t[r] - self._test_t0[r]),
                voltage_v=float(self._v[r]), current_a=float(self._i[r]),
                temperature_c=float(self._temp[r]), step_ah=float(self._step_ah[r]),
                total_ah=float(self._total_ah[r]), total_wh=float(self._total_wh[r]),
                outcome=run.outcome))
        return out

    # ---- the run -----------------------------------------------------------------------------

    async def run(self, requests: Sequence[TestRequest]) -> list[TestOutcome]:
        """Start every request, run until all have ended, and return how each ended."""
        self._check(requests)
        n = len(requests)
        self._allocate(n)
        # Per driver: its name, and the run row of each of its channels (-1: not in this run).
        self._drivers: dict[int, tuple[ChannelDriver, str]] = {}
        self._row_of: dict[int, IntArray] = {}
        for row, req in enumerate(requests):
            driver = req.channel.driver
            if id(driver) not in self._drivers:
                self._drivers[id(driver)] = (driver, req.channel.driver_name)
                self._row_of[id(driver)] = np.full(len(driver.channels), -1, dtype=np.int64)
            self._row_of[id(driver)][req.channel.local] = row
            self._prepare(row, req)
        t = self.clock.now()
        ids = self.db.start_tests([TestStart(
            name=r.request.name or r.request.plan.name, channel=r.request.channel.name,
            driver=r.request.channel.driver_name,
            battery=r.request.battery.name if r.request.battery else None,
            plan_name=r.request.plan.name, plan_source=r.request.plan.source,
            plan_text=r.request.plan.text, sample_period_s=self.sample_period_s,
            station=self.station, start_unix_s=self.clock.unix(t)) for r in self._runs])
        for run, test_id in zip(self._runs, ids, strict=True):
            run.test_id = test_id
            self._test_id[run.row] = test_id
            self._active[run.row] = True
            self._last_t[run.row] = self._test_t0[run.row] = self._cycle_t0[run.row] = t
        for run in self._runs:
            self.hooks.cellbench_test_started(event=TestStarted(
                run.test_id, run.request.channel.name, run.request.name or run.request.plan.name,
                run.request.plan.name, run.request.battery.name if run.request.battery else None,
                self.clock.unix(t)))
            await self._advance(run, t)
        try:
            next_tick = t + self.sample_period_s
            while self._active.any():
                await self.clock.sleep_until(next_tick)
                await self._tick()
                next_tick += self.sample_period_s
                now = self.clock.now()
                if now > next_tick + self.sample_period_s:  # fell behind real time: skip ahead
                    self.overruns += 1
                    next_tick = now
        finally:
            await self._abort_remaining()
            self._record_ends()
            self.writer.flush()
        return [run.outcome for run in self._runs if run.outcome is not None]

    def _check(self, requests: Sequence[TestRequest]) -> None:
        numbers = [r.channel.number for r in requests]
        if len(set(numbers)) != len(numbers):
            raise RunError("a channel appears twice in one run")
        if self.clock.virtual:
            for r in requests:
                if not r.channel.driver.virtual_time_ok:
                    raise RunError(f"channel {r.channel.name} ({r.channel.driver_name}) is real "
                                   f"hardware and needs the real clock (--speed real)")

    def _allocate(self, n: int) -> None:
        def zeros() -> FloatArray:
            return np.zeros(n)

        self._active = np.zeros(n, dtype=bool)
        self._seen = np.zeros(n, dtype=np.int64)
        self._test_id = np.zeros(n, dtype=np.int64)
        self._seq = np.zeros(n, dtype=np.int64)
        self._step_index = np.zeros(n, dtype=np.int64)
        self._plan_line = np.zeros(n, dtype=np.int64)
        self._cycle = np.zeros(n, dtype=np.int64)
        self._last_t, self._test_t0, self._step_t0, self._cycle_t0 = (zeros() for _ in range(4))
        self._step_ah, self._step_wh, self._cycle_ah, self._cycle_wh = (zeros() for _ in range(4))
        self._total_ah, self._total_wh = zeros(), zeros()
        self._v, self._i, self._temp = zeros(), zeros(), np.full(n, np.nan)
        self._vmax, self._imax, self._tmax = (np.full(n, np.inf) for _ in range(3))
        self._vmin, self._tmin = np.full(n, -np.inf), np.full(n, -np.inf)
        self._conditions = ConditionTable(n)

    def _prepare(self, row: int, req: TestRequest) -> None:
        """Resolve every step and limit of the plan for this battery and channel, or refuse."""
        plan, battery, info = req.plan, req.battery, req.channel.info
        capacity = battery.nominal_capacity_ah if battery else plan.capacity_ah
        where = f"{plan.source}"
        program = Program.compile(plan)
        steps: dict[int, _Resolved] = {}
        for pc, ins in enumerate(program.instructions):
            if not isinstance(ins, StepSpec):
                continue
            try:
                steps[pc] = (self._hal_step(ins, capacity),
                             [[(c, c.value.resolve(capacity)) for c in group]
                              for group in ins.until])
            except ValueError as err:
                raise RunError(f"{where}:{ins.line}: {err} (channel {req.channel.name}; "
                               f"give a battery or the plan's capacity)") from None
            step = steps[pc][0]
            if step.voltage_v is not None and not (
                    info.voltage_min_v <= step.voltage_v <= info.voltage_max_v):
                raise RunError(f"{where}:{ins.line}: {step.voltage_v:g} V is outside channel "
                               f"{req.channel.name}'s range {info.voltage_min_v:g}.."
                               f"{info.voltage_max_v:g} V")
            if step.current_a is not None and abs(step.current_a) > info.current_max_a:
                raise RunError(f"{where}:{ins.line}: {step.current_a:g} A is beyond channel "
                               f"{req.channel.name}'s range of {info.current_max_a:g} A")
        limits = plan.limits
        try:
            current_max = _resolve(limits.current_max, capacity)
        except ValueError as err:
            raise RunError(f"{where}: limits.current_max: {err}") from None
        b = battery
        self._vmax[row] = _min(limits.voltage_max, b.voltage_max_v if b else None)
        self._vmin[row] = _max(limits.voltage_min, b.voltage_min_v if b else None)
        self._imax[row] = _min(current_max, b.current_max_charge_a if b else None,
                               b.current_max_discharge_a if b else None)
        self._tmax[row] = _min(limits.temperature_max, b.temperature_max_c if b else None)
        self._tmin[row] = _max(limits.temperature_min)
        self._runs.append(_Run(row, req, 0, Cursor(program), steps))

    @staticmethod
    def _hal_step(spec: StepSpec, capacity: float | None) -> Step:
        return Step(spec.mode, current_a=_resolve(spec.current, capacity),
                    voltage_v=_resolve(spec.voltage, capacity),
                    power_w=_resolve(spec.power, capacity),
                    resistance_ohm=_resolve(spec.resistance, capacity))

    async def _advance(self, run: _Run, t: float) -> None:
        """Move ``run`` to its next step at clock time ``t``, or finish its test."""
        row = run.row
        nxt = run.cursor.advance()
        if nxt is None:
            await self._finish(run, TestStatus.FINISHED, "plan complete", t)
            return
        spec, new_cycle = nxt
        if new_cycle:
            self._cycle[row] = run.cursor.cycle
            self._cycle_t0[row] = t
            self._cycle_ah[row] = self._cycle_wh[row] = 0.0
        step, conditions = run.steps[run.cursor.pc]
        channel = run.request.channel
        try:
            await call_with_timeout(channel.driver.apply(channel.local, step),
                                    self.device_timeout_s, channel.driver_name, "apply")
        except DeviceError as err:
            await self._finish(run, TestStatus.FAILED, f"device error: {err}", t)
            return
        self._conditions.set(row, conditions)
        self._step_t0[row] = t
        self._step_ah[row] = self._step_wh[row] = 0.0
        self._step_index[row] = run.cursor.step_index
        self._plan_line[row] = spec.line
        run.step_no += 1
        run.step_text = spec.text
        run.step_start_seq = int(self._seq[row]) + 1
        run.step_start_time = t - self._test_t0[row]
        self.hooks.cellbench_step_changed(event=StepChanged(
            run.test_id, channel.name, run.cursor.step_index, spec.line, int(self._cycle[row]),
            spec.text, run.step_start_time))

    def _close_step(self, run: _Run, t: float, reason: str) -> None:
        """Write the summary row of the step ``run`` is leaving."""
        row = run.row
        if run.step_no == 0 or run.step_start_seq > self._seq[row]:
            return  # the step never produced a sample
        spec = run.cursor.step
        self.writer.submit_step(StepRow(
            test_id=run.test_id, step_no=run.step_no, step_index=run.cursor.step_index,
            plan_line=spec.line, cycle=int(self._cycle[row]), mode=spec.mode.value,
            text=spec.text, start_seq=run.step_start_seq, end_seq=int(self._seq[row]),
            start_test_time_s=run.step_start_time, end_test_time_s=t - self._test_t0[row],
            ah=float(self._step_ah[row]), wh=float(self._step_wh[row]), end_reason=reason))

    async def _finish(self, run: _Run, status: TestStatus, reason: str, t: float) -> None:
        """End ``run``'s test: output off, conditions cleared, status stored, hooks told."""
        row = run.row
        self._active[row] = False
        self._conditions.clear(row)
        channel = run.request.channel
        try:
            await call_with_timeout(channel.driver.output_off(channel.local),
                                    self.device_timeout_s, channel.driver_name, "output_off")
        except DeviceError as err:
            reason = f"{reason}; switching the output off failed: {err}"
            status = TestStatus.FAILED
        run.outcome = TestOutcome(run.test_id, channel.name, status, reason)
        self._ended.append(TestEnd(run.test_id, status.value, reason, self.clock.unix(t)))
        self.hooks.cellbench_test_finished(event=TestFinished(
            run.test_id, channel.name, status, reason, t - self._test_t0[row]))

    def _alarm(self, run: _Run, message: str, t: float) -> None:
        channel = run.request.channel.name
        self.writer.submit_call(partial(self.db.add_event, kind="alarm", message=message,
                                        test_id=run.test_id, channel=channel,
                                        unix_time_s=self.clock.unix(t)))
        self.hooks.cellbench_alarm(event=Alarm(channel, run.test_id, message))

    async def _abort_remaining(self) -> None:
        """Leave no channel running if the loop ends early (cancelled, or an error)."""
        t = self.clock.now()
        for run in self._runs:
            if self._active[run.row]:
                self._close_step(run, t, "aborted")
                await self._finish(run, TestStatus.STOPPED, "run aborted", t)

    # ---- the hot path ------------------------------------------------------------------------

    async def _measure(self, driver: ChannelDriver, name: str) -> Any:
        return await call_with_timeout(driver.measure(), self.device_timeout_s, name, "measure")

    def _record_ends(self) -> None:
        """Hand the tests that ended to the writer: recorded after their last samples, in one
        transaction, without the event loop waiting for the database."""
        if self._ended:
            self.writer.submit_call(partial(self.db.finish_tests, self._ended))
            self._ended = []

    async def _tick(self) -> None:
        try:
            await self._tick_drivers()
        finally:
            self._record_ends()

    async def _tick_drivers(self) -> None:
        if self._stop:
            await self._handle_stops()
        drivers = [(d, name) for key, (d, name) in self._drivers.items()
                   if self._active[self._row_of[key][self._row_of[key] >= 0]].any()]
        results: list[Any]
        if len(drivers) == 1:  # the common case: skip gather's task per driver
            try:
                results = [await self._measure(*drivers[0])]
            except DeviceError as err:
                results = [err]
        else:
            results = await asyncio.gather(*(self._measure(d, name) for d, name in drivers),
                                           return_exceptions=True)
        parts = []
        for (driver, name), result in zip(drivers, results, strict=True):
            if isinstance(result, DeviceError):
                await self._fail_driver(driver, f"device error: {result}")
                continue
            if isinstance(result, BaseException):
                raise result
            row_of = self._row_of[id(driver)]
            local = result.channel
            if local.dtype.kind not in "iu" or (
                    len(local) and (local.min() < 0 or local.max() >= len(row_of))):
                await self._fail_driver(driver, f"device error: {name} reported "
                                        "samples of a channel it does not have")
                continue
            rows = row_of[local]
            keep = rows >= 0
            keep[keep] = self._active[rows[keep]]
            parts.append((rows[keep], result, keep))
        if not parts:
            return
        rows = np.concatenate([p[0] for p in parts])
        if not len(rows):
            return
        cols = {name: np.concatenate([getattr(p[1], name)[p[2]] for p in parts])
                for name in ("time_s", "voltage_v", "current_a", "temperature_c")}
        aux_names = sorted({a for p in parts for a in p[1].aux})
        for a in aux_names:
            cols["aux:" + a] = np.concatenate(
                [p[1].aux[a][p[2]] if a in p[1].aux else np.full(int(p[2].sum()), np.nan)
                 for p in parts])
        self.ticks += 1
        # More than one sample of a channel in this batch? With repeated indices, the last
        # assignment wins, so some position would not read back its own number.
        positions = np.arange(len(rows))
        self._seen[rows] = positions
        repeated = bool((self._seen[rows] != positions).any())
        if not repeated:
            await self._process(rows, cols)
            return
        # Several samples of one channel in one batch: handle them in rounds, oldest first.
        order = np.lexsort((cols["time_s"], rows))
        sorted_rows = rows[order]
        first = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
        rank = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
        for r in range(int(rank.max()) + 1):
            pick = order[rank == r]
            pick = pick[self._active[rows[pick]]]
            if len(pick):
                await self._process(rows[pick], {k: c[pick] for k, c in cols.items()})

    async def _process(self, rows: IntArray, cols: dict[str, FloatArray]) -> None:
        t, v, i, temp = cols["time_s"], cols["voltage_v"], cols["current_a"], cols["temperature_c"]
        dt = t - self._last_t[rows]
        self._last_t[rows] = t
        p = v * i
        dah, dwh = i * dt / 3600.0, p * dt / 3600.0
        self._step_ah[rows] += dah
        self._step_wh[rows] += dwh
        self._cycle_ah[rows] += dah
        self._cycle_wh[rows] += dwh
        self._total_ah[rows] += dah
        self._total_wh[rows] += dwh
        self._seq[rows] += 1
        self._v[rows], self._i[rows], self._temp[rows] = v, i, temp
        step_time = t - self._step_t0[rows]
        test_time = t - self._test_t0[rows]
        step_ah, step_wh = self._step_ah[rows], self._step_wh[rows]

        q = np.empty((len(rows), len(_Q)))
        q[:, _Q[Quantity.VOLTAGE]] = v
        q[:, _Q[Quantity.CURRENT]] = i
        q[:, _Q[Quantity.ABS_CURRENT]] = np.abs(i)
        q[:, _Q[Quantity.POWER]] = p
        q[:, _Q[Quantity.ABS_POWER]] = np.abs(p)
        q[:, _Q[Quantity.TEMPERATURE]] = temp
        q[:, _Q[Quantity.STEP_TIME]] = step_time
        q[:, _Q[Quantity.TEST_TIME]] = test_time
        q[:, _Q[Quantity.CYCLE_TIME]] = t - self._cycle_t0[rows]
        q[:, _Q[Quantity.STEP_AH]] = step_ah
        q[:, _Q[Quantity.ABS_STEP_AH]] = np.abs(step_ah)
        q[:, _Q[Quantity.STEP_WH]] = step_wh
        q[:, _Q[Quantity.ABS_STEP_WH]] = np.abs(step_wh)

        # Written so that a NaN reading trips: NaN compares false, and the limit is "not within".
        tripped = ~((v <= self._vmax[rows]) & (v >= self._vmin[rows])
                    & (np.abs(i) <= self._imax[rows]))
        tmax, tmin = self._tmax[rows], self._tmin[rows]
        tripped |= np.isfinite(tmax) & ~(temp <= tmax)
        tripped |= np.isfinite(tmin) & ~(temp >= tmin)
        ended = self._conditions.met(rows, q) & ~tripped

        self.writer.submit(SampleRows(
            test_id=self._test_id[rows], seq=self._seq[rows], test_time_s=test_time,
            unix_time_s=t + (self.clock.unix(0.0)), step_time_s=step_time, voltage_v=v,
            current_a=i, power_w=p, temperature_c=temp, step_index=self._step_index[rows],
            plan_line=self._plan_line[rows], cycle=self._cycle[rows], ah=step_ah, wh=step_wh,
            aux={k[4:]: c for k, c in cols.items() if k.startswith("aux:")}))
        self.samples += len(rows)

        if tripped.any():
            for row in rows[tripped]:
                await self._trip(self._runs[row], float(self._last_t[row]))
        if ended.any():
            for row in rows[ended]:
                run = self._runs[row]
                t_row = float(self._last_t[row])
                self._close_step(run, t_row, "end condition")
                await self._advance(run, t_row)

    # ---- events ------------------------------------------------------------------------------

    def _limit_message(self, row: int) -> str:
        v, i, temp = self._v[row], self._i[row], self._temp[row]
        checks = [
            ("voltage", v, "voltage_max", self._vmax[row], v > self._vmax[row], "V"),
            ("voltage", v, "voltage_min", self._vmin[row], v < self._vmin[row], "V"),
            ("current", i, "current_max", self._imax[row], abs(i) > self._imax[row], "A"),
            ("temperature", temp, "temperature_max", self._tmax[row], temp > self._tmax[row],
             "°C"),
            ("temperature", temp, "temperature_min", self._tmin[row], temp < self._tmin[row],
             "°C"),
        ]
        for what, value, limit, bound, beyond, unit in checks:
            if not math.isfinite(value) and (what != "temperature" or math.isfinite(bound)):
                return f"safety limit: the {what} reading is {value} (not a number)"
            if beyond:
                return f"safety limit {limit} {bound:g} {unit}: measured {value:.4g} {unit}"
        return "safety limit"

    async def _trip(self, run: _Run, t: float) -> None:
        message = self._limit_message(run.row)
        self._close_step(run, t, message)
        self._alarm(run, f"channel {run.request.channel.name}: {message}", t)
        await self._finish(run, TestStatus.STOPPED, message, t)

    async def _fail_driver(self, driver: ChannelDriver, reason: str) -> None:
        t = self.clock.now()
        for run in self._runs:
            if run.request.channel.driver is driver and self._active[run.row]:
                self._close_step(run, t, reason)
                self._alarm(run, f"channel {run.request.channel.name}: {reason}", t)
                await self._finish(run, TestStatus.FAILED, reason, t)

    async def _handle_stops(self) -> None:
        stops, self._stop = self._stop, {}
        t = self.clock.now()
        for run in self._runs:
            reason = stops.get(run.request.channel.number, stops.get(None))
            if reason is not None and self._active[run.row]:
                self._close_step(run, float(self._last_t[run.row]), reason)
                await self._finish(run, TestStatus.STOPPED, reason, t)

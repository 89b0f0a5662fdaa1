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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import partial
from typing import Any, cast

import numpy as np

from cellbench_core.events import (
    Alarm,
    PlanMessage,
    StepChanged,
    TestFinished,
    TestStarted,
    TestStatus,
)
from cellbench_core.plan.expr import Computed, ExprError, Scope, resolve
from cellbench_core.plan.model import (
    ActionKind,
    Amount,
    ChamberSpec,
    Condition,
    Limit,
    Message,
    Op,
    Plan,
    Quantity,
    SafetyLimits,
    Signal,
    StepSpec,
    Value,
)
from cellbench_core.runner.conditions import (
    COLUMNS,
    QUANTITY_COLUMN,
    SIGNAL_SLOTS,
    ConditionTable,
)
from cellbench_core.runner.program import Cursor, LoopEnd, Passed, Program
from cellbench_core.storage import (
    BatteryRecord,
    Database,
    PositionRow,
    SampleRows,
    SampleWriter,
    StepRow,
    StorageError,
    TestEnd,
    TestStart,
)
from cellbench_core.units import Dimension, UnitError, parse_quantity
from cellbench_hal import (
    ChamberState,
    ChannelDriver,
    ChannelInfo,
    ClimateChamber,
    Clock,
    DeviceError,
    OsiDevice,
    Profile,
    ProfileQuantity,
    Reading,
    Step,
    StepMode,
    call_with_timeout,
)
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
class Resume:
    """Where a test that a crash interrupted goes on (see :meth:`Runner.resume_point`): the
    position its last step began at, and what the step's committed samples add to it."""

    test_id: int
    step_no: int
    start_seq: int  # the step's first sample
    state: dict[str, Any]  # the runner's record at the step's start (see Runner._position)
    last_seq: int  # the last committed sample (start_seq - 1: the step has none yet)
    test_time_s: float  # the test time to go on from, the time without the station included
    step_time_s: float  # how long the step ran
    charged: FloatArray  # the step's charge and energy, charging and discharging: [Ah, Wh]
    discharged: FloatArray
    down_s: float  # how long the test was without a station


@dataclass(frozen=True)
class TestRequest:
    """Run ``plan`` on ``channel`` (for ``battery``, whose data sets C-rates and limits);
    ``chamber`` is the climate chamber holding the cell, for the plan's chamber steps;
    ``resume`` continues an interrupted test instead of starting a new one."""

    channel: ChannelRef
    plan: Plan
    battery: BatteryRecord | None = None
    name: str = ""
    chamber: ClimateChamber | None = None
    resume: Resume | None = None
    #: The chamber's name in the station (its signals are recorded as ``<name>.temperature``).
    chamber_name: str | None = None
    #: The OSI devices serving the channel, by station name (``<name>.<signal>`` is recorded).
    devices: tuple[tuple[str, OsiDevice], ...] = ()

    __test__ = False


@dataclass(frozen=True)
class TestOutcome:
    """How a test ended."""

    test_id: int
    channel: str
    status: TestStatus
    reason: str

    __test__ = False


class ChannelState(StrEnum):
    """What a channel does, as the station's control API reports it."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"


class _Control(Enum):
    """An operator's request the runner applies at its next tick."""

    PAUSE = "pause"
    RESUME = "resume"
    NEXT = "next"


@dataclass(frozen=True)
class ChannelStatus:
    """A channel's state for live displays."""

    channel: str
    test_id: int
    running: bool
    paused: bool
    step: str
    step_no: int
    steps_total: int
    cycle: int
    test_time_s: float
    voltage_v: float
    current_a: float
    temperature_c: float
    step_ah: float
    step_wh: float
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
    paused: bool = False  # as asked for: the runner applies it at its next tick
    signal_columns: dict[str, int] = field(default_factory=dict)  # signals its plan ends on


#: A step resolved for one battery: the channel setpoint and the (condition, SI threshold) groups.
_Resolved = tuple[Step, list[list[tuple[Condition, float]]]]


#: The safety limits as columns of upper bounds on signed readings (v, -v, i, -i, T, -T): the
#: limit's name, the sign that turns its value into the bound, the sign that turns the signed
#: reading back into the reading, and the unit. The current limit has a column per direction
#: (batteries register one for each).
_LIMITS = (("voltage_max", 1.0, 1.0, "V"), ("voltage_min", -1.0, -1.0, "V"),
           ("current_max", 1.0, 1.0, "A"), ("current_max", 1.0, -1.0, "A"),
           ("temperature_max", 1.0, 1.0, "°C"), ("temperature_min", -1.0, -1.0, "°C"))


def _limit_bounds(limits: SafetyLimits, battery: BatteryRecord | None,
                  capacity: float | None) -> tuple[list[float], list[float]]:
    """Each _LIMITS column's upper bound on the signed reading, and its delay (s)."""
    b = battery
    registered = (None,) * 6 if b is None else (
        b.voltage_max_v, b.voltage_min_v, b.current_max_charge_a, b.current_max_discharge_a,
        b.temperature_max_c, None)
    bounds, delays = [], []
    for (name, sign, _, _), own in zip(_LIMITS, registered, strict=True):
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
            raise ValueError(f"{_LIMITS[low][0]} {-bounds[low]:g} {unit} is not below "
                             f"{_LIMITS[high][0]} {bounds[high]:g} {unit}")
    return bounds, delays


def _extremes(step: Step) -> tuple[list[float], list[float]]:
    """The voltages and currents ``step`` may set, at their extremes (current limits included)."""
    voltages = [] if step.voltage_v is None else [step.voltage_v]
    currents = [] if step.current_a is None else [step.current_a]
    if step.profile is not None and step.profile.quantity is ProfileQuantity.VOLTAGE:
        voltages += [min(step.profile.value), max(step.profile.value)]
    elif step.profile is not None and step.profile.quantity is ProfileQuantity.CURRENT:
        currents += [min(step.profile.value), max(step.profile.value)]
    return voltages, currents


def _beyond_limits(step: Step, bounds: list[float]) -> str:
    """What of ``step``'s setpoint lies beyond the safety limits, or ''."""
    voltages, currents = _extremes(step)
    if step.mode is StepMode.CV or (step.profile is not None
                                    and step.profile.quantity is ProfileQuantity.VOLTAGE):
        currents = currents[1:] if step.current_a is not None else currents  # only a limit
    checks = [(0, v) for v in voltages] + [(1, -v) for v in voltages]
    checks += [(2, i) if i > 0 else (3, -i) for i in currents]
    for column, reading in checks:
        if reading > bounds[column]:
            name, bound_sign, reading_sign, unit = _LIMITS[column]
            return (f"the setpoint {reading_sign * reading:g} {unit} is beyond the safety limit "
                    f"{name} {bound_sign * bounds[column]:g} {unit}")
    return ""


def _plan_signals(program: Program) -> list[str]:
    """The signals the steps of ``program`` end on, in a fixed order."""
    return sorted({c.quantity.name for ins in program.instructions if isinstance(ins, StepSpec)
                   for group in ins.until for c in group if isinstance(c.quantity, Signal)})


def _signal_units(req: TestRequest) -> dict[str, str]:
    """Every signal the test's channel records, with its unit."""
    units = {f"{name}.{s.name}": s.unit for name, device in req.devices for s in device.signals}
    if req.chamber is not None and req.chamber_name is not None:
        units[f"{req.chamber_name}.temperature"] = "°C"
        if req.chamber.has_humidity:
            units[f"{req.chamber_name}.humidity"] = "%"
    return units


def _threshold(condition: Condition, scope: Scope, units: dict[str, str],
               channel: str) -> float:
    """A condition's threshold: SI for a quantity, the signal's own unit for a signal; a
    ValueError says why it cannot be computed, or the signal compared on this channel."""
    quantity = condition.quantity
    if not isinstance(quantity, Signal):
        return resolve(condition.value, scope)
    assert isinstance(condition.value, Value)  # the parser takes no expressions for signals
    if quantity.name not in units:
        known = ", ".join(sorted(units)) or "none"
        raise ValueError(f"signal {quantity.name!r} is not recorded on channel {channel} "
                         f"(its signals: {known}; see [[devices]] and [[chambers]])")
    unit = units[quantity.name]
    if quantity.dimension is Dimension.COUNT:
        return condition.value.si  # a bare number, in the signal's own unit
    try:
        dimension, per_unit = parse_quantity(f"1 {unit}")
    except UnitError:
        dimension = None
    if dimension is not quantity.dimension:
        raise ValueError(f"signal {quantity.name!r} is in {unit!r}; compare it with a bare "
                         f"number in {unit!r} or a value of its kind, not {quantity.dimension}")
    return condition.value.si / per_unit.si


def _resolve(value: Amount | None, scope: Scope) -> float | None:
    return None if value is None else resolve(value, scope)


def _variables(step: StepSpec) -> frozenset[str]:
    """The variables ``step``'s setpoints and thresholds read."""
    amounts = [step.current, step.voltage, step.power, step.resistance,
               *(c.value for group in step.until for c in group)]
    return frozenset().union(*(a.expr.variables for a in amounts if isinstance(a, Computed)))


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
        # Rows in a chamber step -> since when their chamber has been stable (None: it is not)
        # and when the step began.
        self._waits: dict[int, tuple[float | None, float]] = {}
        self._serving = False
        self._pending: list[tuple[TestRequest, asyncio.Future[int]]] = []  # from add()
        self._wake = asyncio.Event()  # set by add() and shutdown() for an idle serving run
        self._run_of: dict[int, _Run] = {}  # channel number -> its latest test's run
        #: Changes whenever what :meth:`state` or :meth:`latest` report may have changed (a
        #: tick, a test started or ended, a control request), so readers can cache by it.
        self.generation = 0
        self._actions: list[tuple[_Run, _Control]] = []  # pause/resume/next, for the next tick
        #: Called with every processed batch: the channel numbers and the sample rows (the
        #: station's control API keeps its ring buffer and feeds subscribers from it).
        self.observer: Callable[[IntArray, SampleRows], None] | None = None
        # The station's devices and chambers that running tests see, by name: the channels
        # each serves, and whether its last read failed (logged once per failure).
        self._attached: dict[str, tuple[OsiDevice | ClimateChamber, set[int]]] = {}
        self._failing: set[str] = set()
        self._signals_now: dict[str, float] = {}  # this tick's signal values
        # Per signal that running tests end steps on: their rows and its column in each row.
        self._signal_users: dict[str, dict[int, int]] = {}

    # ---- control -----------------------------------------------------------------------------

    def stop(self, channel: int | None = None, reason: str = "stopped by operator") -> None:
        """Ask to stop one channel's test (or all) at the next tick, output off."""
        self._stop[channel] = reason

    def state(self, channel: int) -> ChannelState:
        """Whether ``channel`` runs a test (paused or not) or is idle; a test handed to
        :meth:`add` counts as running from then on."""
        run = self._run_of.get(channel)
        if run is not None and self._active[run.row]:
            return ChannelState.PAUSED if run.paused else ChannelState.RUNNING
        if any(req.channel.number == channel for req, _ in self._pending):
            return ChannelState.RUNNING
        return ChannelState.IDLE

    def pause(self, channel: int) -> None:
        """At the next tick, switch the output of ``channel``'s running test off and hold the
        test: its step time and end conditions stand still; samples and safety limits go on."""
        self._act(channel, _Control.PAUSE)

    def resume(self, channel: int) -> None:
        """At the next tick, re-apply the paused step's setpoint and let the test go on."""
        self._act(channel, _Control.RESUME)

    def next_step(self, channel: int) -> None:
        """At the next tick, end the step ``channel`` runs and go on with the plan (a paused
        test goes on, unpaused)."""
        self._act(channel, _Control.NEXT)

    def _act(self, channel: int, action: _Control) -> None:
        run = self._run_of.get(channel)
        if run is None or not self._active[run.row]:
            raise RunError(f"channel {channel} runs no test")
        if action is not _Control.NEXT:
            run.paused = action is _Control.PAUSE
        self._actions.append((run, action))
        self.generation += 1

    def latest(self, channel: int) -> ChannelStatus | None:
        """The state of ``channel``'s latest test (running or ended), or None if it ran none."""
        run = self._run_of.get(channel)
        return None if run is None else self._status(run)

    def snapshot(self) -> list[ChannelStatus]:
        """The state of every channel of this run, for live displays."""
        return [self._status(run) for run in self._runs]

    def _status(self, run: _Run) -> ChannelStatus:
        r = run.row
        return ChannelStatus(
            channel=run.request.channel.name, test_id=run.test_id,
            running=bool(self._active[r]), paused=bool(self._active[r] and run.paused),
            step=run.step_text, step_no=run.step_no, steps_total=run.cursor.program.steps_total,
            cycle=int(self._cycle[r]), test_time_s=float(self._last_t[r] - self._test_t0[r]),
            voltage_v=float(self._v[r]), current_a=float(self._i[r]),
            temperature_c=float(self._temp[r]), step_ah=float(self._step_ah[r]),
            step_wh=float(self._step_wh[r]), total_ah=float(self._total_ah[r]),
            total_wh=float(self._total_wh[r]), outcome=run.outcome)

    # ---- the run -----------------------------------------------------------------------------

    async def run(self, requests: Sequence[TestRequest], *, serve: bool = False
                  ) -> list[TestOutcome]:
        """Start every request, run until all have ended, and return how each ended.

        With ``serve``, keep running after that and start the tests :meth:`add` hands in, each
        at the next tick, until :meth:`shutdown`.
        """
        self._allocate(0)
        # Per driver: its name, and the run row of each of its channels (-1: not in this run).
        self._drivers: dict[int, tuple[ChannelDriver, str]] = {}
        self._row_of: dict[int, IntArray] = {}
        self._serving = serve
        await self._start(requests)
        try:
            next_tick = self.clock.now() + self.sample_period_s
            while self._active.any() or self._serving:
                if self._pending:
                    await self._start_pending()
                if not self._active.any():  # serving, idle: wait for a test, not the clock
                    if self._serving and not self._pending:
                        self._wake.clear()
                        await self._wake.wait()
                    next_tick = self.clock.now() + self.sample_period_s
                    continue
                await self.clock.sleep_until(next_tick)
                await self._tick()
                next_tick += self.sample_period_s
                now = self.clock.now()
                if now > next_tick + self.sample_period_s:  # fell behind real time: skip ahead
                    self.overruns += 1
                    next_tick = now
        finally:
            self._serving = False
            for _, future in self._pending:
                if not future.done():
                    future.set_exception(RunError("the station stopped before the test began"))
            self._pending = []
            await self._abort_remaining()
            self._record_ends()
            self.writer.flush()
        return [run.outcome for run in self._runs if run.outcome is not None]

    def add(self, request: TestRequest) -> asyncio.Future[int]:
        """Start ``request`` at the next tick of a serving :meth:`run` (its channel must be
        idle); the future gives the new test's id, or the RunError that refused it."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if not self._serving:
            future.set_exception(RunError("the runner is not serving"))
            return future
        self._pending.append((request, future))
        self.generation += 1
        self._wake.set()
        return future

    def shutdown(self, reason: str = "station stopped") -> None:
        """End a serving :meth:`run`: stop every running test (output off) at the next tick."""
        self._serving = False
        self.stop(None, reason)
        self._wake.set()

    async def _start_pending(self) -> None:
        pending, self._pending = self._pending, []
        if len(pending) > 1:  # all together in one transaction; one at a time if that fails
            first = len(self._runs)
            try:
                await self._start([request for request, _ in pending])
            except (RunError, StorageError, ValueError):  # refused before any started
                pass
            except Exception as err:  # a fault after they started: each caller sees it
                for _, future in pending:
                    if not future.done():
                        future.set_exception(err)
                return
            else:
                for run, (_, future) in zip(self._runs[first:], pending, strict=True):
                    if not future.done():
                        future.set_result(run.test_id)
                return
        for request, future in pending:
            try:
                await self._start([request])
            except Exception as err:  # any error is the caller's; the others' tests go on
                if not future.done():
                    future.set_exception(err)
                continue
            if not future.done():
                future.set_result(self._runs[-1].test_id)

    async def _start(self, requests: Sequence[TestRequest]) -> None:
        """Prepare every request on a new row and start its test; all or none."""
        self.generation += 1
        self._check(requests)
        first = len(self._runs)
        self._grow(first + len(requests))
        try:
            for row, req in enumerate(requests, first):
                self._prepare(row, req)
            t = self.clock.now()
            new = [r for r in self._runs[first:] if r.request.resume is None]
            ids = self.db.start_tests([TestStart(
                name=r.request.name or r.request.plan.name, channel=r.request.channel.name,
                driver=r.request.channel.driver_name,
                battery=r.request.battery.name if r.request.battery else None,
                plan_name=r.request.plan.name, plan_source=r.request.plan.source,
                plan_text=r.request.plan.text, sample_period_s=self.sample_period_s,
                station=self.station, start_unix_s=self.clock.unix(t))
                for r in new]) if new else []
        except BaseException:
            del self._runs[first:]
            raise
        for run in self._runs[first:]:
            channel = run.request.channel
            if id(channel.driver) not in self._drivers:
                self._drivers[id(channel.driver)] = (channel.driver, channel.driver_name)
                self._row_of[id(channel.driver)] = np.full(len(channel.driver.channels), -1,
                                                           dtype=np.int64)
            self._row_of[id(channel.driver)][channel.local] = run.row
            self._channel_no[run.row] = channel.number
            for name, column in run.signal_columns.items():
                self._signal_users.setdefault(name, {})[run.row] = column
            attached: list[tuple[str, OsiDevice | ClimateChamber]] = [*run.request.devices]
            if run.request.chamber is not None and run.request.chamber_name is not None:
                attached.append((run.request.chamber_name, run.request.chamber))
            for name, device in attached:
                self._attached.setdefault(name, (device, set()))[1].add(channel.number)
        for run, test_id in zip(new, ids, strict=True):
            run.test_id = test_id
        for run in self._runs[first:]:
            if run.request.resume is not None:
                run.test_id = run.request.resume.test_id
            self._test_id[run.row] = run.test_id
            self._active[run.row] = True
            self._run_of[run.request.channel.number] = run
            self._last_t[run.row] = self._test_t0[run.row] = self._cycle_t0[run.row] = t
        for run in self._runs[first:]:
            if run.request.resume is not None:
                await self._continue(run, run.request.resume, t)
                continue
            self.hooks.cellbench_test_started(event=TestStarted(
                run.test_id, run.request.channel.name, run.request.name or run.request.plan.name,
                run.request.plan.name, run.request.battery.name if run.request.battery else None,
                self.clock.unix(t)))
            await self._advance(run, t)

    def _check(self, requests: Sequence[TestRequest]) -> None:
        numbers = [r.channel.number for r in requests]
        if len(set(numbers)) != len(numbers):
            raise RunError("a channel appears twice in one run")
        for run in self._runs:
            if self._active[run.row] and run.request.channel.number in numbers:
                raise RunError(f"channel {run.request.channel.name} is running test "
                               f"{run.test_id}")
        if self.clock.virtual:
            for r in requests:
                if not r.channel.driver.virtual_time_ok:
                    raise RunError(f"channel {r.channel.name} ({r.channel.driver_name}) is real "
                                   f"hardware and needs the real clock (--speed real)")

    def _allocate(self, n: int) -> None:
        def zeros() -> FloatArray:
            return np.zeros(n)

        self._active = np.zeros(n, dtype=bool)
        self._paused = np.zeros(n, dtype=bool)  # as applied (see _Run.paused)
        self._channel_no = np.zeros(n, dtype=np.int64)
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
        # Safety limits by _LIMITS column, as upper bounds of the signed readings (see _process);
        # the delay each needs, and since when a reading has been beyond it (NaN: it is not).
        self._bound = np.full((n, len(_LIMITS)), np.inf)
        self._delay = np.zeros((n, len(_LIMITS)))
        self._beyond_since = np.full((n, len(_LIMITS)), np.nan)
        self._conditions = ConditionTable(n)
        # Charge and discharge counters, both positive: [row, scope (step, cycle, test), Ah/Wh].
        self._charged, self._discharged = np.zeros((n, 3, 2)), np.zeros((n, 3, 2))
        # The previous sample of the running step (NaN at a step's start), for dV/dt and dT/dt.
        self._prev_t, self._prev_v, self._prev_temp = (np.full(n, np.nan) for _ in range(3))
        # Every quantity of each channel's last sample, for loop conditions.
        self._q_last = np.full((n, COLUMNS), np.nan)

    def _grow(self, n: int) -> None:
        """Make room for ``n`` rows, keeping those there are (every array attribute of the
        runner and of its condition table has one entry per row along its first axis)."""
        have = len(self._active)
        if n <= have:
            return
        old = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        conditions = self._conditions
        self._allocate(max(n, 2 * have))  # doubling: a serving station adds rows one by one
        size = len(self._active)
        for k, v in old.items():
            getattr(self, k)[:have] = v
        for k, v in vars(conditions).items():
            if isinstance(v, np.ndarray):
                grown = np.zeros((size, *v.shape[1:]), dtype=v.dtype)
                grown[:have] = v
                setattr(self._conditions, k, grown)

    def _prepare(self, row: int, req: TestRequest) -> None:
        """Resolve every step and limit of the plan for this battery and channel, or refuse."""
        capacity = req.battery.nominal_capacity_ah if req.battery else req.plan.capacity_ah
        program = Program.compile(req.plan)
        if req.resume is None:
            cursor = Cursor(program, capacity_ah=capacity)
        else:
            try:
                cursor = Cursor.restore(program, req.resume.state["cursor"])
            except (KeyError, TypeError, ValueError) as err:
                raise RunError(f"test {req.resume.test_id} cannot resume: {err}") from None
            capacity = cursor.capacity_ah
        steps, bounds, delays = self.resolve_plan(req, program, capacity, cursor.variables)
        self._bound[row], self._delay[row], self._beyond_since[row] = bounds, delays, np.nan
        columns = {name: len(QUANTITY_COLUMN) + k for k, name in enumerate(_plan_signals(program))}
        self._runs.append(_Run(row, req, 0, cursor, steps, signal_columns=columns))

    @staticmethod
    def resolve_plan(req: TestRequest, program: Program, capacity: float | None,
                     variables: Mapping[str, float] | None = None
                     ) -> tuple[dict[int, _Resolved], list[float], list[float]]:
        """Every step of ``program`` and the limits, resolved with ``capacity`` for C-rates and
        the ``variables`` set so far, and checked against the channel's ranges and the limits;
        RunError if one does not fit. A step reading a variable not set yet is left out (it is
        resolved once a set step sets it). Needs no runner: ``cellbench plan check --station``
        uses it on unopened channels."""
        plan, battery = req.plan, req.battery
        where = f"{plan.source}"
        if len(_plan_signals(program)) > SIGNAL_SLOTS:
            raise RunError(f"{where}: the plan ends steps on more than {SIGNAL_SLOTS} different "
                           "signals")
        for ins in program.instructions:
            if not isinstance(ins, StepSpec) or ins.chamber is None:
                continue
            if req.chamber is None:
                raise RunError(f"{where}:{ins.line}: a chamber step, but channel "
                               f"{req.channel.name} has no climate chamber")
            if ins.chamber.humidity_pct is not None and not req.chamber.has_humidity:
                raise RunError(f"{where}:{ins.line}: the chamber of channel "
                               f"{req.channel.name} has no humidity control")
        try:
            bounds, delays = _limit_bounds(plan.limits, battery, capacity)
        except ValueError as err:
            raise RunError(f"{where}: {err} (channel {req.channel.name})") from None
        scope = Scope(variables or {}, capacity, battery)
        steps = Runner._resolve_steps(req, program, range(len(program.instructions)), scope,
                                      bounds)
        for ins in program.instructions:
            if isinstance(ins, LoopEnd):
                try:
                    for group in ins.until:
                        for c in group:
                            resolve(c.value, scope)
                except ValueError as err:
                    raise RunError(f"{where}:{group[0].line}: {err} (channel "
                                   f"{req.channel.name}; give a battery or the plan's capacity)"
                                   ) from None
        return steps, bounds, delays

    @staticmethod
    def _resolve_steps(req: TestRequest, program: Program, pcs: Iterable[int], scope: Scope,
                       bounds: list[float]) -> dict[int, _Resolved]:
        """The steps at ``pcs`` whose variables ``scope`` has, resolved and checked against
        the channel's ranges and the limit ``bounds``; RunError if one does not fit."""
        where, battery, info = req.plan.source, req.battery, req.channel.info
        units = _signal_units(req)
        steps: dict[int, _Resolved] = {}
        for pc in pcs:
            ins = program.instructions[pc]
            if not isinstance(ins, StepSpec) or not _variables(ins) <= scope.variables.keys():
                continue
            try:
                groups = [[(c, _threshold(c, scope, units, req.channel.name))
                           for c in group] for group in ins.until]
                if ins.profile is not None:  # the step ends with its profile
                    end = ins.profile.time_s[-1]
                    groups.append([(Condition(Quantity.STEP_TIME, Op.GE, Value(end)), end)])
                steps[pc] = (Runner._hal_step(ins, scope), groups)
            except ValueError as err:
                hint = "" if "signal" in str(err) or isinstance(err, ExprError) else (
                    f" (channel {req.channel.name}; give a battery or the plan's capacity)")
                raise RunError(f"{where}:{ins.line}: {err}{hint}") from None
            voltages, currents = _extremes(steps[pc][0])
            for volts in voltages:
                if not info.voltage_min_v <= volts <= info.voltage_max_v:
                    raise RunError(f"{where}:{ins.line}: {volts:g} V is outside channel "
                                   f"{req.channel.name}'s range {info.voltage_min_v:g}.."
                                   f"{info.voltage_max_v:g} V")
            for amps in currents:
                if abs(amps) > info.current_max_a:
                    raise RunError(f"{where}:{ins.line}: {amps:g} A is beyond channel "
                                   f"{req.channel.name}'s range of {info.current_max_a:g} A")
            problem = _beyond_limits(steps[pc][0], bounds)
            if problem:
                raise RunError(f"{where}:{ins.line}: {problem} (channel {req.channel.name}"
                               f"{f', battery {battery.name}' if battery else ''})")
        return steps

    @staticmethod
    def _hal_step(spec: StepSpec, scope: Scope) -> Step:
        profile = None
        if spec.profile is not None:
            p = spec.profile
            scale = Value(1.0, p.per_capacity).resolve(scope.capacity_ah)
            profile = Profile(p.quantity, p.time_s, tuple(v * scale for v in p.values), p.hold)
        return Step(spec.mode, current_a=_resolve(spec.current, scope),
                    voltage_v=_resolve(spec.voltage, scope),
                    power_w=_resolve(spec.power, scope),
                    resistance_ohm=_resolve(spec.resistance, scope), profile=profile)

    async def _advance(self, run: _Run, t: float, group: int | None = None) -> None:
        """Move ``run`` on at clock time ``t`` as its step's end condition group ``group`` says
        (None: to the next step), or finish its test."""
        row = run.row
        reason = "plan complete"
        if group is not None and run.cursor.step.action(group).kind is ActionKind.END_TEST:
            reason = f"end test at line {run.cursor.step.line}"
        nxt = run.cursor.advance(group, self._q_last[row])
        for passed in run.cursor.passed:
            problem = self._pass(run, passed, t)
            if problem:
                self._alarm(run, f"channel {run.request.channel.name}: {problem}", t)
                await self._finish(run, TestStatus.FAILED, problem, t)
                return
        if nxt is None:
            await self._finish(run, TestStatus.FINISHED, reason, t)
            return
        spec, new_cycle = nxt
        if run.cursor.pc not in run.steps:  # a goto went past the set step of a variable
            unset = ", ".join(sorted(_variables(spec) - run.cursor.variables.keys()))
            problem = (f"{run.request.plan.source}:{spec.line}: the step reads {unset}, which "
                       "no set step has set yet")
            self._alarm(run, f"channel {run.request.channel.name}: {problem}", t)
            await self._finish(run, TestStatus.FAILED, problem, t)
            return
        if new_cycle:
            self._cycle[row] = run.cursor.cycle
            self._cycle_t0[row] = t
            self._cycle_ah[row] = self._cycle_wh[row] = 0.0
            self._charged[row, 1] = self._discharged[row, 1] = 0.0
        if not await self._enter(run, spec, t):
            return
        self._step_t0[row] = t
        self._step_ah[row] = self._step_wh[row] = 0.0
        self._charged[row, 0] = self._discharged[row, 0] = 0.0
        run.step_no += 1
        run.step_start_seq = int(self._seq[row]) + 1
        run.step_start_time = t - self._test_t0[row]
        self.writer.submit_position(PositionRow(run.test_id, run.step_no, run.step_start_seq,
                                                self.clock.unix(t), self._position(run)))
        self.hooks.cellbench_step_changed(event=StepChanged(
            run.test_id, run.request.channel.name, run.cursor.step_index, spec.line,
            int(self._cycle[row]), spec.text, run.step_start_time))

    async def _enter(self, run: _Run, spec: StepSpec, t: float) -> bool:
        """Apply the cursor's step ``spec`` to the channel (and its chamber); False if that
        failed and ended the test."""
        row = run.row
        step, conditions = run.steps[run.cursor.pc]
        channel = run.request.channel
        try:
            await call_with_timeout(channel.driver.apply(channel.local, step),
                                    self.device_timeout_s, channel.driver_name, "apply")
        except DeviceError as err:
            await self._finish(run, TestStatus.FAILED, f"device error: {err}", t)
            return False
        self._conditions.set(row, conditions, run.signal_columns)
        self._waits.pop(row, None)
        if spec.chamber is not None:
            problem = await self._set_chamber(run, spec.chamber)
            if problem:
                await self._fail_wait(run, problem, t)
                return False
            self._waits[row] = (None, t)
        self._prev_t[row] = self._prev_v[row] = self._prev_temp[row] = np.nan
        self._step_index[row] = run.cursor.step_index
        self._plan_line[row] = spec.line
        run.step_text = spec.text
        return True

    # ---- resuming after a crash --------------------------------------------------------------

    def _position(self, run: _Run) -> dict[str, Any]:
        """What :meth:`_continue` needs besides the samples, as the step begins."""
        row = run.row
        return {"cursor": run.cursor.state(),
                "step_start_test_time_s": run.step_start_time,
                "cycle_start_test_time_s": float(self._cycle_t0[row] - self._test_t0[row]),
                "cycle_ah": float(self._cycle_ah[row]), "cycle_wh": float(self._cycle_wh[row]),
                "test_ah": float(self._total_ah[row]), "test_wh": float(self._total_wh[row]),
                "charged": self._charged[row].tolist(),
                "discharged": self._discharged[row].tolist()}

    @staticmethod
    def resume_point(db: Database, test_id: int, unix_now_s: float) -> Resume | None:
        """Where the running test ``test_id`` goes on after a crash, from its last committed
        position and the samples committed since; None if it committed no position."""
        position = db.position(test_id)
        test = db.test(test_id)
        if position is None or test is None:
            return None
        rows = db.samples(test_id, ["seq", "test_time_s", "unix_time_s", "step_time_s",
                                    "current_a", "power_w"], from_seq=position.start_seq - 1)
        seq, times = rows["seq"], rows["test_time_s"]
        if len(seq):
            last_seq, last_time = int(seq[-1]), float(times[-1])
            last_unix = float(rows["unix_time_s"][-1])
        else:  # the test committed its first position and no sample yet
            last_seq, last_time, last_unix = 0, 0.0, test.start_unix_s
        mine = seq >= position.start_seq
        charged, discharged = np.zeros(2), np.zeros(2)
        step_time = 0.0
        if mine.any():
            # Step time counts what the runner integrated over (it stands still while paused
            # and while the station is down), so its steps are the runner's dt.
            step_times = rows["step_time_s"][mine]
            dt = np.diff(np.r_[0.0, step_times])
            amounts = np.nan_to_num(np.stack((rows["current_a"][mine] * dt,
                                              rows["power_w"][mine] * dt), axis=1) / 3600.0)
            charged = np.where(amounts > 0, amounts, 0.0).sum(axis=0)
            discharged = -np.where(amounts < 0, amounts, 0.0).sum(axis=0)
            step_time = float(rows["step_time_s"][-1])
        down = max(0.0, unix_now_s - last_unix)
        return Resume(test_id, position.step_no, position.start_seq, dict(position.state),
                      last_seq, last_time + down, step_time, charged, discharged, down)

    async def _continue(self, run: _Run, resume: Resume, t: float) -> None:
        """Set ``run``'s row up as the interrupted test left it, and apply its step again."""
        row, state = run.row, resume.state
        self._seq[row] = resume.last_seq
        self._test_t0[row] = t - resume.test_time_s
        self._cycle_t0[row] = self._test_t0[row] + state["cycle_start_test_time_s"]
        self._step_t0[row] = t - resume.step_time_s
        self._cycle[row] = run.cursor.cycle
        self._charged[row] = state["charged"]
        self._discharged[row] = state["discharged"]
        self._charged[row, 0], self._discharged[row, 0] = resume.charged, resume.discharged
        net = resume.charged - resume.discharged
        self._step_ah[row], self._step_wh[row] = net
        self._cycle_ah[row] = state["cycle_ah"] + net[0]
        self._cycle_wh[row] = state["cycle_wh"] + net[1]
        self._total_ah[row] = state["test_ah"] + net[0]
        self._total_wh[row] = state["test_wh"] + net[1]
        self._charged[row, 1:] += resume.charged
        self._discharged[row, 1:] += resume.discharged
        run.step_no, run.step_start_seq = resume.step_no, resume.start_seq
        run.step_start_time = state["step_start_test_time_s"]
        spec = run.cursor.step
        if not await self._enter(run, spec, t):
            return
        message = (f"resumed at step {resume.step_no} (plan line {spec.line}) after "
                   f"{resume.down_s:.0f} s without the station; samples go on from seq "
                   f"{resume.last_seq + 1}")
        log.info("test %d on channel %s: %s", run.test_id, run.request.channel.name, message)
        self.writer.submit_call(partial(self.db.add_event, kind="resumed", message=message,
                                        test_id=run.test_id, channel=run.request.channel.name,
                                        unix_time_s=self.clock.unix(t)))

    async def _set_chamber(self, run: _Run, spec: ChamberSpec) -> str:
        """Hand the chamber step's setpoints to the chamber; return why that failed, or ''."""
        chamber = run.request.chamber
        assert chamber is not None  # checked before the test started
        try:
            if spec.temperature_c is not None:
                await call_with_timeout(chamber.set_temperature(spec.temperature_c),
                                        self.device_timeout_s, chamber.name, "set_temperature")
            if spec.humidity_pct is not None:
                await call_with_timeout(chamber.set_humidity(spec.humidity_pct),
                                        self.device_timeout_s, chamber.name, "set_humidity")
            await call_with_timeout(chamber.start(), self.device_timeout_s, chamber.name, "start")
        except DeviceError as err:
            return f"chamber error: {err}"
        return ""

    def _pass(self, run: _Run, passed: Passed, t: float) -> str:
        """Act on a message or set step ``run`` passed; return why the test must fail, or ''."""
        channel = run.request.channel.name
        if isinstance(passed, Message):
            self.writer.submit_call(partial(self.db.add_event, kind="message", message=passed.text,
                                            test_id=run.test_id, channel=channel,
                                            unix_time_s=self.clock.unix(t)))
            self.hooks.cellbench_message(event=PlanMessage(run.test_id, channel, passed.line,
                                                           passed.text))
            return ""
        where = f"{run.request.plan.source}:{passed.line}"
        cursor, req, row = run.cursor, run.request, run.row
        last = self._q_last[row]
        variables, capacity = dict(cursor.variables), cursor.capacity_ah
        for name, expr in passed.values:
            scope = Scope(variables, capacity, req.battery,
                          lambda quantity: float(last[_Q[Quantity(quantity)]]))
            try:
                value = expr.evaluate(scope)
            except ExprError as err:
                return f"{where}: set {name}: {err}"
            if name != "capacity":
                variables[name] = value
            elif value > 0:
                capacity = value
            else:
                return (f"{where}: set capacity: {expr} gives {value:g} Ah, not a capacity "
                        "(is it measured yet?)")
        changed = {name for name, value in variables.items()
                   if cursor.variables.get(name) != value}
        try:
            if capacity != cursor.capacity_ah:  # C-rates, and with them limits, change
                steps, bounds, delays = self.resolve_plan(req, cursor.program, capacity,
                                                          variables)
                self._bound[row], self._delay[row] = bounds, delays
            else:
                using = [pc for pc, ins in enumerate(cursor.program.instructions)
                         if isinstance(ins, StepSpec) and _variables(ins) & changed]
                steps = {**run.steps, **self._resolve_steps(
                    req, cursor.program, using, Scope(variables, capacity, req.battery),
                    self._bound[row].tolist())}
        except RunError as err:
            if capacity != cursor.capacity_ah:
                return f"set capacity {capacity:.4g} Ah at {where}: {err}"
            return f"set {', '.join(sorted(changed))} at {where}: {err}"
        run.steps, cursor.variables, cursor.capacity_ah = steps, variables, capacity
        for counter in passed.resets:
            self._reset(row, counter, t)
        return ""

    def _reset(self, row: int, counter: str, t: float) -> None:
        """Set a cycle or test counter (of plan.model.COUNTERS) of ``row`` to zero at ``t``."""
        if counter == "cycle_time":
            self._cycle_t0[row] = t
            return
        scope, unit = (1 if counter.startswith("cycle_") else 2), int(counter.endswith("_wh"))
        totals = ((self._cycle_ah, self._cycle_wh), (self._total_ah, self._total_wh))[scope - 1]
        totals[unit][row] = 0.0
        self._charged[row, scope, unit] = self._discharged[row, scope, unit] = 0.0

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
        self.generation += 1
        for name in run.signal_columns:
            users = self._signal_users.get(name, {})
            users.pop(row, None)
            if not users:
                self._signal_users.pop(name, None)
        self._waits.pop(row, None)
        self._active[row] = False
        self._paused[row] = run.paused = False
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
        self.generation += 1
        try:
            await self._tick_drivers()
            if self._waits:
                await self._check_chambers()
        finally:
            self._record_ends()

    async def _check_chambers(self) -> None:
        """Move on the channels whose chamber has been stable long enough; fail those whose
        chamber did not get stable in time (per-channel Python: chamber steps are rare)."""
        t = self.clock.now()
        states: dict[int, ChamberState | DeviceError] = {}
        for row, (since, began) in list(self._waits.items()):
            run = self._runs[row]
            if self._paused[row]:
                continue  # the wait stands still with the step
            chamber = run.request.chamber
            spec = run.cursor.step.chamber
            assert chamber is not None and spec is not None
            if id(chamber) not in states:
                try:
                    states[id(chamber)] = await call_with_timeout(
                        chamber.read(), self.device_timeout_s, chamber.name, "read")
                except DeviceError as err:
                    states[id(chamber)] = err
            state = states[id(chamber)]
            if isinstance(state, DeviceError):
                await self._fail_wait(run, f"chamber error: {state}", t)
                continue
            stable = abs(state.temperature_c - state.setpoint_c) <= spec.band_k
            if spec.humidity_pct is not None:
                humidity = state.humidity_pct if state.humidity_pct is not None else math.nan
                stable &= abs(humidity - spec.humidity_pct) <= (spec.band_pct or 0.0)
            since = (since if since is not None else t) if stable else None
            if since is not None and t - since >= spec.stable_s:
                del self._waits[row]
                self._close_step(run, t, "chamber stable")
                await self._advance(run, t, run.cursor.step.ends - 1)
            elif t - began >= spec.timeout_s:
                await self._fail_wait(run, f"the chamber was not stable within "
                                      f"{spec.timeout_s:g} s (line {run.cursor.step.line})", t)
            else:
                self._waits[row] = (since, began)

    async def _fail_wait(self, run: _Run, reason: str, t: float) -> None:
        self._waits.pop(run.row, None)
        self._close_step(run, t, reason)
        self._alarm(run, f"channel {run.request.channel.name}: {reason}", t)
        await self._finish(run, TestStatus.FAILED, reason, t)

    async def _read_attached(self) -> dict[str, tuple[float, set[int]]]:
        """Read every attached device and chamber once: each signal's value (NaN if its device
        failed) and the channels that see it. Chambers also set their channels' ambient."""
        names = list(self._attached)
        results = await asyncio.gather(*(call_with_timeout(
            self._attached[n][0].read(), self.device_timeout_s, n, "read") for n in names),
            return_exceptions=True)
        signals: dict[str, tuple[float, set[int]]] = {}
        for name, result in zip(names, results, strict=True):
            device, channels = self._attached[name]
            if isinstance(result, BaseException):
                if not isinstance(result, DeviceError):
                    raise result
                if name not in self._failing:
                    log.warning("%s: %s; its signals are recorded as missing", name, result)
                    self._failing.add(name)
                values: dict[str, float] = {s.name: math.nan for s in getattr(
                    device, "signals", ())} if isinstance(device, OsiDevice) else {
                    "temperature": math.nan}
            elif isinstance(result, ChamberState):
                self._failing.discard(name)
                values = {"temperature": result.temperature_c}
                if result.humidity_pct is not None:
                    values["humidity"] = result.humidity_pct
                self._set_ambient(channels, result.temperature_c)
            else:
                self._failing.discard(name)
                readings = cast(Mapping[str, Reading], result)
                values = {signal: reading.value for signal, reading in readings.items()}
            for signal, value in values.items():
                signals[f"{name}.{signal}"] = (value, channels)
        return signals

    def _fill_signals(self, rows: IntArray, q: FloatArray) -> None:
        """Put this tick's signal values into the columns of the rows whose steps end on them."""
        position = {int(row): p for p, row in enumerate(rows.tolist())}
        for name, users in self._signal_users.items():
            value = self._signals_now.get(name, math.nan)
            for row, column in users.items():
                p = position.get(row)
                if p is not None:
                    q[p, column] = value

    def _set_ambient(self, channels: set[int], celsius: float) -> None:
        if not math.isfinite(celsius):
            return
        for number in channels:
            run = self._run_of.get(number)
            if run is not None and self._active[run.row]:
                ref = run.request.channel
                ref.driver.set_ambient(ref.local, celsius)

    async def _tick_drivers(self) -> None:
        if self._stop:
            await self._handle_stops()
        if self._actions:
            await self._handle_actions()
        signals = await self._read_attached() if self._attached else {}
        self._signals_now = {name: value for name, (value, _) in signals.items()}
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
        if signals:
            numbers = self._channel_no[rows]
            for name, (value, channels) in signals.items():
                sees = np.isin(numbers, np.fromiter(channels, np.int64, len(channels)))
                if sees.any():
                    cols["aux:" + name] = np.where(sees, value, np.nan)
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
        paused = self._paused[rows]
        if paused.any():  # a paused step's time stands still
            self._step_t0[rows[paused]] += dt[paused]
        p = v * i
        dah, dwh = i * dt / 3600.0, p * dt / 3600.0
        self._step_ah[rows] += dah
        self._step_wh[rows] += dwh
        self._cycle_ah[rows] += dah
        self._cycle_wh[rows] += dwh
        self._total_ah[rows] += dah
        self._total_wh[rows] += dwh
        amounts = np.stack((dah, dwh), axis=1)[:, None, :]  # broadcast over the three scopes
        self._charged[rows] += np.where(amounts > 0, amounts, 0.0)
        self._discharged[rows] -= np.where(amounts < 0, amounts, 0.0)
        charged, discharged = self._charged[rows], self._discharged[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            since = t - self._prev_t[rows]  # NaN on a step's first sample: no rate yet
            dv_dt = (v - self._prev_v[rows]) / since
            dtemp_dt = (temp - self._prev_temp[rows]) / since
        self._prev_t[rows], self._prev_v[rows], self._prev_temp[rows] = t, v, temp
        self._seq[rows] += 1
        self._v[rows], self._i[rows], self._temp[rows] = v, i, temp
        step_time = t - self._step_t0[rows]
        test_time = t - self._test_t0[rows]
        step_ah, step_wh = self._step_ah[rows], self._step_wh[rows]

        q = np.full((len(rows), COLUMNS), np.nan)
        if self._signal_users:
            self._fill_signals(rows, q)
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
        for scope, prefix in enumerate(("step", "cycle", "test")):
            for unit, name in enumerate(("ah", "wh")):
                q[:, _Q[Quantity(f"{prefix}_charge_{name}")]] = charged[:, scope, unit]
                q[:, _Q[Quantity(f"{prefix}_discharge_{name}")]] = discharged[:, scope, unit]
        q[:, _Q[Quantity.CYCLE_AH]] = self._cycle_ah[rows]
        q[:, _Q[Quantity.CYCLE_WH]] = self._cycle_wh[rows]
        q[:, _Q[Quantity.TEST_AH]] = self._total_ah[rows]
        q[:, _Q[Quantity.TEST_WH]] = self._total_wh[rows]
        q[:, _Q[Quantity.DV_DT]] = dv_dt
        q[:, _Q[Quantity.ABS_DV_DT]] = np.abs(dv_dt)
        q[:, _Q[Quantity.DTEMP_DT]] = dtemp_dt
        q[:, _Q[Quantity.CYCLE]] = self._cycle[rows]
        self._q_last[rows] = q

        # A non-finite reading trips at once (a temperature only where one is limited); a
        # reading beyond a limit trips once it has stayed beyond for the limit's delay.
        bound = self._bound[rows]
        signed = np.stack((v, -v, i, -i, temp, -temp), axis=1)
        temperature_limited = np.isfinite(bound[:, 4]) | np.isfinite(bound[:, 5])
        tripped = ~np.isfinite(v) | ~np.isfinite(i) | (temperature_limited & ~np.isfinite(temp))
        beyond = signed > bound
        since = self._beyond_since[rows]
        since = np.where(beyond, np.where(np.isnan(since), t[:, None], since), np.nan)
        self._beyond_since[rows] = since
        tripped |= (beyond & (t[:, None] - since >= self._delay[rows])).any(axis=1)
        group = self._conditions.met(rows, q)
        ended = (group >= 0) & ~tripped & ~paused

        batch = SampleRows(
            test_id=self._test_id[rows], seq=self._seq[rows], test_time_s=test_time,
            unix_time_s=t + (self.clock.unix(0.0)), step_time_s=step_time, voltage_v=v,
            current_a=i, power_w=p, temperature_c=temp, step_index=self._step_index[rows],
            plan_line=self._plan_line[rows], cycle=self._cycle[rows], ah=step_ah, wh=step_wh,
            aux={k[4:]: c for k, c in cols.items() if k.startswith("aux:")})
        self.writer.submit(batch)
        self.samples += len(rows)
        if self.observer is not None:
            self.observer(self._channel_no[rows], batch)

        if tripped.any():
            for row in rows[tripped]:
                await self._trip(self._runs[row], float(self._last_t[row]))
        if ended.any():
            for row, g in zip(rows[ended], group[ended], strict=True):
                run = self._runs[row]
                t_row = float(self._last_t[row])
                self._close_step(run, t_row, "end condition")
                await self._advance(run, t_row, int(g))

    # ---- events ------------------------------------------------------------------------------

    def _limit_message(self, row: int) -> str:
        v, i, temp = self._v[row], self._i[row], self._temp[row]
        for what, value in (("voltage", v), ("current", i), ("temperature", temp)):
            if not math.isfinite(value) and (what != "temperature"
                                             or np.isfinite(self._bound[row, 4:]).any()):
                return f"safety limit: the {what} reading is {value} (not a number)"
        signed = (v, -v, i, -i, temp, -temp)
        for column, (name, bound_sign, reading_sign, unit) in enumerate(_LIMITS):
            if signed[column] > self._bound[row, column]:
                bound, delay = bound_sign * self._bound[row, column], self._delay[row, column]
                held = f" for {delay:g} s" if delay else ""
                return (f"safety limit {name} {bound:g} {unit}: measured "
                        f"{reading_sign * signed[column]:.4g} {unit}{held}")
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

    async def _handle_actions(self) -> None:
        actions, self._actions = self._actions, []
        t = self.clock.now()
        for run, action in actions:
            row, channel = run.row, run.request.channel
            if not self._active[row]:
                continue  # it ended meanwhile
            if action is _Control.NEXT:
                self._paused[row] = run.paused = False
                self._waits.pop(row, None)
                t_row = float(self._last_t[row])  # the step ends with its last sample
                self._close_step(run, t_row, "next step by operator")
                await self._advance(run, t_row)
                continue
            if (action is _Control.PAUSE) == bool(self._paused[row]):
                continue  # paused and resumed again (or the reverse) before this tick
            try:
                if action is _Control.PAUSE:
                    await call_with_timeout(channel.driver.output_off(channel.local),
                                            self.device_timeout_s, channel.driver_name,
                                            "output_off")
                else:
                    await call_with_timeout(channel.driver.apply(channel.local,
                                                                 run.steps[run.cursor.pc][0]),
                                            self.device_timeout_s, channel.driver_name, "apply")
            except DeviceError as err:
                reason = f"device error on {action.value}: {err}"
                self._close_step(run, float(self._last_t[row]), reason)
                self._alarm(run, f"channel {channel.name}: {reason}", t)
                await self._finish(run, TestStatus.FAILED, reason, t)
                continue
            self._paused[row] = action is _Control.PAUSE
            self._prev_t[row] = self._prev_v[row] = self._prev_temp[row] = np.nan  # no rate
            # across the pause's edges

    async def _handle_stops(self) -> None:
        stops, self._stop = self._stop, {}
        t = self.clock.now()
        for run in self._runs:
            reason = stops.get(run.request.channel.number, stops.get(None))
            if reason is not None and self._active[run.row]:
                self._close_step(run, float(self._last_t[run.row]), reason)
                await self._finish(run, TestStatus.STOPPED, reason, t)

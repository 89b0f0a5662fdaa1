"""The runner: every channel follows its own plan, samples are handled in batches across channels.

:class:`Runner` is what the CLI, the station service and the control API hold: it starts tests
(on a new row of the shared :class:`~cellbench_core.runner.state.RunState`), takes operators'
requests, reports channel states, and runs the loop that ticks at the sample period
(tick.py does each tick). A single shared loop rather than one task per channel: at 10,000
channels one task each costs about ten times as much (bench/bench_runner.py measures both).

The parts: records.py (what callers exchange), state.py (the per-row arrays), resolve.py and
limits.py (a plan resolved for a battery, and its safety limits), transitions.py (step changes
and ends), resume.py (after a crash), attached.py (devices and chambers), external.py
(setpoints from a superior system in external steps), tick.py (the hot path).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from cellbench_core.dispatch import EventDispatcher, Problem
from cellbench_core.events import Alarm, TestStarted, TestStatus
from cellbench_core.plan.program import Program
from cellbench_core.runner.cursor import Cursor
from cellbench_core.runner.external import keepalive, pausing, set_setpoint
from cellbench_core.runner.records import (
    ChannelState,
    ChannelStatus,
    Control,
    Resolved,
    Resume,
    Run,
    RunError,
    SignalPlan,
    TestOutcome,
    TestRequest,
)
from cellbench_core.runner.resolve import resolve_plan as _resolve_plan
from cellbench_core.runner.resolve import resolve_signals as _resolve_signals
from cellbench_core.runner.resume import resume_point as _resume_point
from cellbench_core.runner.state import RunState
from cellbench_core.runner.tick import record_ends, tick
from cellbench_core.runner.transitions import (
    advance_all,
    close_step,
    continue_test,
    finish_all,
    write_on_start,
)
from cellbench_core.storage import (
    Database,
    SampleRows,
    SampleWriter,
    StorageError,
    StorageFailure,
    TestStart,
)
from cellbench_core.storage.records import driver_message
from cellbench_hal import ClimateChamber, Clock, OsiDevice, Step
from cellbench_hal.types import IntArray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A test request with its plan compiled and resolved for its channel and battery."""

    request: TestRequest
    cursor: Cursor
    steps: dict[int, Resolved]
    bounds: list[float]
    delays: list[float]
    signals: SignalPlan
    chamber_steps: bool


def prepare(req: TestRequest, shared: Shared | None = None) -> Prepared:
    """Compile ``req``'s plan and resolve every step and limit of it for its battery and
    channel, or refuse with RunError. Touches no runner state: it runs in a worker thread.
    Requests prepared with one ``shared`` (those of one start) compile each plan once and
    resolve it once per battery, chamber, devices and channel ranges."""
    shared = shared or Shared()
    program = shared.programs.get(id(req.plan))
    if program is None:
        program = shared.programs[id(req.plan)] = Program.compile(req.plan)
    if req.resume is None:
        key = _resolution_key(req)
        resolution = shared.resolutions.get(key)
        if resolution is None:
            capacity = req.battery.nominal_capacity_ah if req.battery else req.plan.capacity_ah
            cursor = Cursor(program, capacity_ah=capacity)
            resolution = shared.resolutions[key] = (
                capacity, *_resolve_plan(req, program, capacity, cursor.variables),
                _resolve_signals(req, program))
        capacity, steps, bounds, delays, signals = resolution
        cursor = Cursor(program, capacity_ah=capacity)
    else:
        try:
            cursor = Cursor.restore(program, req.resume.state["cursor"])
        except (KeyError, TypeError, ValueError) as err:
            raise RunError(f"test {req.resume.test_id} cannot resume: {err}") from None
        steps, bounds, delays = _resolve_plan(req, program, cursor.capacity_ah,
                                              cursor.variables)
        signals = _resolve_signals(req, program)
    return Prepared(req, cursor, steps, bounds, delays, signals, program.chamber_steps)


class Runner:
    """Runs test plans on channels until every one has ended (one :meth:`run` per runner).

    ``hooks`` is the plugin manager's hook relay: lifecycle events reach the plugins through an
    :class:`~cellbench_core.dispatch.EventDispatcher` (off the event loop, each plugin isolated;
    what one did not take is recorded as an event of the test), which :meth:`run` drains, for at
    most ``events_timeout_s``, before it returns. ``on_event`` is called on the event loop with
    every lifecycle event as it happens, before the plugins get it; it must be quick and must
    not raise (the station service books its queue entries with it).
    """

    def __init__(self, db: Database, writer: SampleWriter, clock: Clock, *,
                 sample_period_s: float = 1.0, hooks: Any = None, station: str = "station",
                 device_timeout_s: float = 5.0, events_timeout_s: float = 5.0,
                 on_event: Callable[[object], None] | None = None) -> None:
        if not (math.isfinite(sample_period_s) and sample_period_s > 0):
            raise RunError(f"sample period must be a positive number of seconds, "
                           f"not {sample_period_s!r}")
        self.db, self.writer, self.clock = db, writer, clock
        self.sample_period_s = sample_period_s
        self.station = station
        self.device_timeout_s = device_timeout_s
        self.events_timeout_s = events_timeout_s
        self.overruns = 0  # ticks that started more than one period late (real time only)
        self._st = RunState(db, writer, clock, EventDispatcher(hooks, on_problem=self._record),
                            device_timeout_s=device_timeout_s, on_event=on_event)
        self._serving = False
        self._pending: list[tuple[Prepared, asyncio.Future[int]]] = []  # from add()
        #: add()'s requests being prepared, until they are pending.
        self._preparing: dict[asyncio.Task[Any] | None, TestRequest] = {}
        #: channel numbers of a start under way: off the pending list, not placed yet.
        self._starting: set[int] = set()
        self._wake = asyncio.Event()  # set by add() and shutdown() for an idle serving run
        self._storage_trouble: str | None = None  # why the writer retries, as last alarmed
        self._storage_failed = False

    @property
    def ticks(self) -> int:
        """Ticks that measured samples."""
        return self._st.ticks

    @property
    def samples(self) -> int:
        """Samples handled (and handed to the writer)."""
        return self._st.samples

    @property
    def generation(self) -> int:
        """Changes whenever what :meth:`state` or :meth:`latest` report may have changed (a
        tick, a test started or ended, a control request), so readers can cache by it."""
        return self._st.generation

    @property
    def observer(self) -> Callable[[IntArray, SampleRows], None] | None:
        """Called with every processed batch: the channel numbers and the sample rows (the
        station's control API keeps its ring buffer and feeds subscribers from it)."""
        return self._st.observer

    @observer.setter
    def observer(self, observer: Callable[[IntArray, SampleRows], None] | None) -> None:
        self._st.observer = observer

    @staticmethod
    def resolve_plan(req: TestRequest, program: Program, capacity: float | None,
                     variables: Mapping[str, float] | None = None
                     ) -> tuple[dict[int, Resolved], list[float], list[float]]:
        """See :func:`cellbench_core.runner.resolve.resolve_plan` (needs no runner: ``cellbench
        plan check --station`` uses it on unopened channels)."""
        return _resolve_plan(req, program, capacity, variables)

    @staticmethod
    def resolve_signals(req: TestRequest, program: Program) -> SignalPlan:
        """See :func:`cellbench_core.runner.resolve.resolve_signals` (needs no runner either)."""
        return _resolve_signals(req, program)

    @staticmethod
    def resume_point(db: Database, test_id: int, unix_now_s: float) -> Resume | None:
        """See :func:`cellbench_core.runner.resume.resume_point`."""
        return _resume_point(db, test_id, unix_now_s)

    # ---- control -----------------------------------------------------------------------------

    def stop(self, channel: int | None = None, reason: str = "stopped by operator") -> None:
        """Ask to stop one channel's test (or all) at the next tick, output off."""
        self._st.stop[channel] = reason

    def state(self, channel: int) -> ChannelState:
        """Whether ``channel`` runs a test (paused or not) or is idle; a test handed to
        :meth:`add` counts as running from then on."""
        st = self._st
        run = st.run_of.get(channel)
        if run is not None and st.active[run.row]:
            return ChannelState.PAUSED if run.paused else ChannelState.RUNNING
        if channel in self._starting or any(
                req.channel.number == channel for req in self._preparing.values()) or any(
                p.request.channel.number == channel for p, _ in self._pending):
            return ChannelState.RUNNING
        return ChannelState.IDLE

    def pause(self, channel: int) -> None:
        """At the next tick, switch the output of ``channel``'s running test off and hold the
        test: its step time and end conditions stand still; samples and safety limits go on."""
        self._act(channel, Control.PAUSE)

    def resume(self, channel: int) -> None:
        """At the next tick, re-apply the paused step's setpoint and let the test go on."""
        self._act(channel, Control.RESUME)

    def next_step(self, channel: int) -> None:
        """At the next tick, end the step ``channel`` runs and go on with the plan (a paused
        test goes on, unpaused)."""
        self._act(channel, Control.NEXT)

    def _act(self, channel: int, action: Control) -> None:
        st = self._st
        run = self._running(channel)
        if action is Control.PAUSE:
            pausing(st, run)
        if action is not Control.NEXT:
            run.paused = action is Control.PAUSE
        st.actions.append((run, action))
        st.generation += 1

    async def set_setpoint(self, channel: int, setpoint: Step, identity: str) -> Step:
        """Apply ``setpoint`` (rest, cc, cv or cp) to ``channel`` in an external step at once,
        recorded with ``identity``; return the step applied. Refused with a
        :class:`~cellbench_core.runner.external.SetpointRefused` (nothing changed) outside an
        external step or beyond the channel's ranges or the test's limits."""
        return await set_setpoint(self._st, self._running(channel), setpoint, identity)

    def keepalive(self, channel: int) -> None:
        """Restart the watchdog of ``channel``'s external step (SetpointRefused if none)."""
        keepalive(self._st, self._running(channel))

    def _running(self, channel: int) -> Run:
        run = self._st.run_of.get(channel)
        if run is None or not self._st.active[run.row]:
            raise RunError(f"channel {channel} runs no test")
        return run

    def latest(self, channel: int) -> ChannelStatus | None:
        """The state of ``channel``'s latest test (running or ended), or None if it ran none."""
        run = self._st.run_of.get(channel)
        return None if run is None else self._status(run)

    def snapshot(self) -> list[ChannelStatus]:
        """The state of every channel of this run, for live displays."""
        return [self._status(run) for run in self._st.runs]

    def _status(self, run: Run) -> ChannelStatus:
        st, r = self._st, run.row
        return ChannelStatus(
            channel=run.request.channel.name, test_id=run.test_id,
            running=bool(st.active[r]), paused=bool(st.active[r] and run.paused),
            step=run.step_text, step_no=run.step_no, steps_total=run.cursor.program.steps_total,
            cycle=int(st.cycle[r]), test_time_s=float(st.last_t[r] - st.test_t0[r]),
            voltage_v=float(st.v[r]), current_a=float(st.i[r]),
            temperature_c=float(st.temp[r]), step_ah=float(st.step_ah[r]),
            step_wh=float(st.step_wh[r]), total_ah=float(st.total_ah[r]),
            total_wh=float(st.total_wh[r]), outcome=run.outcome,
            battery=None if run.request.battery is None else run.request.battery.name)

    # ---- the run -----------------------------------------------------------------------------

    async def run(self, requests: Sequence[TestRequest], *, serve: bool = False
                  ) -> list[TestOutcome]:
        """Start every request, run until all have ended, and return how each ended.

        With ``serve``, keep running after that and start the tests :meth:`add` hands in, each
        at the next tick, until :meth:`shutdown`.

        While the database does not accept the writer's writes, an alarm says so once; when
        that lasts beyond the writer's retry window, every running channel's output goes off,
        the tests end as failed (recorded if the database takes that still) and
        :class:`~cellbench_core.storage.StorageFailure` is raised with a one-line reason.
        """
        st = self._st
        self._serving = serve
        await self._start(requests)
        try:
            await self._loop()
        except StorageFailure as failure:
            raise StorageFailure(await self._stop_on_storage_failure(failure)) from failure
        finally:
            self._serving = False
            for _, future in self._pending:
                if not future.done():
                    future.set_exception(RunError("the station stopped before the test began"))
            self._pending = []
            await self._abort_remaining()
            record_ends(st)
            await asyncio.to_thread(st.events.close, self.events_timeout_s)
            if not self._storage_failed:
                self.writer.flush()
        return [run.outcome for run in st.runs if run.outcome is not None]

    async def _loop(self) -> None:
        st = self._st
        next_tick = self.clock.now() + self.sample_period_s
        while st.active.any() or self._serving:
            if self._pending:
                await self._start_pending()
            if not st.active.any():  # serving, idle: wait for a test, not the clock
                if self._serving and not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                next_tick = self.clock.now() + self.sample_period_s
                continue
            await self.clock.sleep_until(next_tick)
            await tick(st)
            self._watch_storage()
            next_tick += self.sample_period_s
            now = self.clock.now()
            if now > next_tick + self.sample_period_s:  # fell behind real time: skip ahead
                self.overruns += 1
                next_tick = now

    def _watch_storage(self) -> None:
        """Raise an alarm once when the writer starts retrying, and record when it recovers."""
        trouble = self.writer.trouble
        if (trouble is None) == (self._storage_trouble is None):
            return
        self._storage_trouble = trouble
        if trouble is not None:
            message = (f"the database does not accept writes ({trouble}): retrying for up to "
                       f"{self.writer.retry_s:g} s, then every test stops")
            log.warning("%s", message)
            self._st.announce("cellbench_alarm", Alarm(None, None, message))
            return
        log.warning("the database accepts writes again")
        self.writer.submit_call(partial(
            self.db.add_event, kind="storage_recovered",
            message="the database accepts writes again after an alarm",
            unix_time_s=self.clock.unix(self.clock.now())))

    async def _stop_on_storage_failure(self, failure: StorageFailure) -> str:
        """Every running channel's output off (all at once, first), the station's ``on_stop``
        values written, the tests ended as failed and their ends recorded directly if the
        database takes them; return the one-line reason to raise."""
        st = self._st
        self._storage_failed = True
        t = self.clock.now()
        reason = f"the station stopped: {failure}"
        await finish_all(st, [(run, reason) for run in st.runs if st.active[run.row]],
                         TestStatus.FAILED, t)
        ends, st.ended = st.ended, []
        if not ends:
            return f"{failure}"
        try:
            await asyncio.to_thread(self.db.finish_tests, ends)
        except Exception as err:  # the database still refuses: the tests stay as they were
            log.error("the ends of %d tests could not be recorded: %s", len(ends),
                      driver_message(err))
            return (f"{failure}; every output is off; {len(ends)} running tests could not be "
                    "recorded as ended and stay running in the database until the next start")
        return f"{failure}; every output is off; {len(ends)} running tests ended as failed"

    def add(self, request: TestRequest | Prepared) -> asyncio.Future[int]:
        """Start ``request`` at the next tick of a serving :meth:`run` (its channel must be
        idle). A request not prepared yet (:func:`prepare`) is prepared first, in a worker
        thread: a long plan never delays a tick. The future gives the new test's id, or the
        RunError that refused it."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if not self._serving:
            future.set_exception(RunError("the runner is not serving"))
            return future
        if isinstance(request, Prepared):  # prepared off the loop by the caller
            self._pending.append((request, future))
            self._st.generation += 1
            self._wake.set()
            return future
        task = asyncio.create_task(self._prepare_pending(request, future))
        self._preparing[task] = request
        task.add_done_callback(lambda done: self._preparing.pop(done, None))
        self._st.generation += 1  # its channel counts as running from now on
        return future

    async def _prepare_pending(self, request: TestRequest, future: asyncio.Future[int]) -> None:
        try:
            prepared: Prepared | None = await asyncio.to_thread(prepare, request)
            refusal: BaseException | None = None
        except Exception as err:  # the caller's: nothing was started
            prepared, refusal = None, err
        if prepared is not None and not self._serving:
            prepared, refusal = None, RunError("the station stopped before the test began")
        if prepared is not None:
            self._pending.append((prepared, future))
            self._wake.set()
        # Pending, or idle again, from here on: state() sees no gap, and the caller hears after.
        self._preparing.pop(asyncio.current_task(), None)
        self._st.generation += 1
        if refusal is not None and not future.done():
            future.set_exception(refusal)

    def shutdown(self, reason: str = "station stopped") -> None:
        """End a serving :meth:`run`: stop every running test (output off) at the next tick."""
        self._serving = False
        self.stop(None, reason)
        self._wake.set()

    def _record(self, problem: Problem) -> None:
        """Record an event a plugin did not take (called on the dispatcher's thread)."""
        self.writer.submit_call(partial(
            self.db.add_event, kind=problem.kind, message=problem.message,
            test_id=problem.test_id, channel=problem.channel,
            unix_time_s=self.clock.unix(self.clock.now()), data=problem.data))

    async def _start_pending(self) -> None:
        pending, self._pending = self._pending, []
        # Running to state() until each is placed or refused (starts await their rows).
        self._starting = {prepared.request.channel.number for prepared, _ in pending}
        try:
            await self._start_pending_now(pending)
        finally:
            self._starting = set()
            self._st.generation += 1

    async def _start_pending_now(self, pending: list[tuple[Prepared, asyncio.Future[int]]]
                                 ) -> None:
        runs = self._st.runs
        if len(pending) > 1:  # all together in one transaction; one at a time if that fails
            first = len(runs)
            try:
                await self._start([prepared for prepared, _ in pending])
            except (RunError, StorageError, ValueError):  # refused before any started
                pass
            except Exception as err:  # a fault after they started: each caller sees it
                for _, future in pending:
                    if not future.done():
                        future.set_exception(err)
                return
            else:
                for run, (_, future) in zip(runs[first:], pending, strict=True):
                    if not future.done():
                        future.set_result(run.test_id)
                return
        for prepared, future in pending:
            try:
                await self._start([prepared])
            except Exception as err:  # any error is the caller's; the others' tests go on
                self._starting.discard(prepared.request.channel.number)  # idle again
                if not future.done():
                    future.set_exception(err)
                continue
            if not future.done():
                future.set_result(runs[-1].test_id)

    async def _start(self, requests: Sequence[TestRequest | Prepared]) -> None:
        """Prepare every request (those not prepared yet) on a new row and start its test; all
        or none."""
        try:
            with _collection_paused():
                await self._start_all(requests)
        finally:
            # After the change, not before: the start awaits its rows, and a reader that
            # cached state() in between would keep "idle" for a channel that runs.
            self._st.generation += 1

    async def _start_all(self, requests: Sequence[TestRequest | Prepared]) -> None:
        st = self._st
        t = self.clock.now()
        first = len(st.runs)
        rows = np.arange(first, first + len(requests))
        # The database writes the tests' rows in a worker thread while the runner prepares,
        # checks and places them, and commits once the runner says they may start: a
        # server's share of the work (foreign keys, indexes) overlaps the runner's.
        verdict = _Verdict()
        recording = None
        try:
            recording = self._record_starts(requests, t, verdict)
            shared = Shared()
            ready = [r if isinstance(r, Prepared) else prepare(r, shared) for r in requests]
            self._check([r.request for r in ready])
            st.grow(first + len(ready))
            self._place(first, ready)
            verdict.give(True)
            ids = await recording if recording is not None else []
        except BaseException:
            verdict.give(False)
            del st.runs[first:]
            if recording is not None:  # rolled back (or, if committed, as after a crash)
                await asyncio.wait([recording])
                if not recording.cancelled():
                    recording.exception()  # seen: the withdrawal is this error's consequence
            raise
        new = [r for r in st.runs[first:] if r.request.resume is None]
        runs = st.runs[first:]
        for run, test_id in zip(new, ids, strict=True):
            run.test_id = test_id
        for run in runs:
            if run.request.resume is not None:
                run.test_id = run.request.resume.test_id
            st.run_of[run.request.channel.number] = run
            self._attach(run)
        st.test_id[rows] = [run.test_id for run in runs]
        st.channel_no[rows] = [run.request.channel.number for run in runs]
        st.active[rows] = True
        st.last_t[rows] = st.test_t0[rows] = st.cycle_t0[rows] = t
        starting = []
        unix = self.clock.unix(t)
        for run in runs:
            if run.request.resume is not None:
                await continue_test(st, run, run.request.resume, t)
                continue
            st.announce("cellbench_test_started", TestStarted(
                run.test_id, run.request.channel.name, run.request.name or run.request.plan.name,
                run.request.plan.name, run.request.battery.name if run.request.battery else None,
                unix))
            self._record_device_info(run, t)
            if not run.signals.on_start or await write_on_start(st, run, t):
                starting.append(run)
        await advance_all(st, starting, t)

    def _record_starts(self, requests: Sequence[TestRequest | Prepared], t: float,
                       verdict: _Verdict) -> asyncio.Future[list[int]] | None:
        """Record the new tests of ``requests`` (those not resumed) in a worker thread, to
        commit or roll back as ``verdict`` says; None if there are none."""
        starts = [TestStart(
            name=req.name or req.plan.name, channel=req.channel.name,
            driver=req.channel.driver_name, battery=req.battery.name if req.battery else None,
            plan_name=req.plan.name, plan_source=req.plan.source, plan_text=req.plan.text,
            sample_period_s=self.sample_period_s, station=self.station,
            start_unix_s=self.clock.unix(t))
            for req in (r.request if isinstance(r, Prepared) else r for r in requests)
            if req.resume is None]
        if not starts:
            return None
        return asyncio.get_running_loop().run_in_executor(
            None, self.db.start_tests, starts, verdict.wait)

    def _attach(self, run: Run) -> None:
        """Map ``run``'s channel to its row, and give its test the signals and the devices and
        chamber it reads."""
        st = self._st
        channel = run.request.channel
        driver = id(channel.driver)
        if driver not in st.drivers:
            st.drivers[driver] = (channel.driver, channel.driver_name)
            st.row_of[driver] = np.full(len(channel.driver.channels), -1, dtype=np.int64)
        st.row_of[driver][channel.local] = run.row
        if run.signals.columns:
            st.use_signals(run.row, run.signals.columns)
        if run.signals.limited:
            st.signal_limited.add(run.row)
        attached: list[tuple[str, OsiDevice | ClimateChamber]] = [*run.request.devices]
        if run.request.chamber is not None and run.request.chamber_name is not None:
            attached.append((run.request.chamber_name, run.request.chamber))
        for name, device in attached:
            st.attached.setdefault(name, (device, set()))[1].add(channel.number)

    def _record_device_info(self, run: Run, t: float) -> None:
        """Record with ``run``'s new test what each of its OSI devices says about itself (a
        smart battery's maker and serial number, a logger's *IDN?): one ``device_info`` event
        per device that says something."""
        for name, device in run.request.devices:
            info = {str(key): str(value) for key, value in device.info.items()}
            if not info:
                continue
            text = ", ".join(f"{key} {value}" for key, value in info.items())
            self._st.writer.submit_call(partial(
                self.db.add_event, kind="device_info", message=f"{name}: {text}",
                test_id=run.test_id, channel=run.request.channel.name,
                unix_time_s=self.clock.unix(t), data={"device": name, "info": info}))

    def _check(self, requests: Sequence[TestRequest]) -> None:
        st = self._st
        numbers = [r.channel.number for r in requests]
        if len(set(numbers)) != len(numbers):
            raise RunError("a channel appears twice in one run")
        for run in st.runs:
            if st.active[run.row] and run.request.channel.number in numbers:
                raise RunError(f"channel {run.request.channel.name} is running test "
                               f"{run.test_id}")
        if self.clock.virtual:
            for r in requests:
                if not r.channel.driver.virtual_time_ok:
                    raise RunError(f"channel {r.channel.name} ({r.channel.driver_name}) is real "
                                   f"hardware and needs the real clock (--speed real)")

    def _place(self, first: int, ready: Sequence[Prepared]) -> None:
        """Give the prepared tests rows ``first``, ``first + 1``... of the runner's arrays
        (tests prepared alike share their limits: one assignment per group)."""
        st = self._st
        alike: dict[tuple[int, int, int], tuple[Prepared, list[int]]] = {}
        for row, prepared in enumerate(ready, first):
            key = (id(prepared.bounds), id(prepared.delays), id(prepared.signals))
            alike.setdefault(key, (prepared, []))[1].append(row)
            st.runs.append(Run(row, prepared.request, 0, prepared.cursor, prepared.steps,
                               signals=prepared.signals, chamber_steps=prepared.chamber_steps))
        for prepared, rows in alike.values():
            st.bound[rows], st.delay[rows] = prepared.bounds, prepared.delays
            st.signal_bound[rows] = prepared.signals.bound
            st.signal_delay[rows] = prepared.signals.delay
        placed = slice(first, first + len(ready))
        st.beyond_since[placed] = st.signal_since[placed] = np.nan

    async def _abort_remaining(self) -> None:
        """Leave no channel running if the loop ends early (cancelled, or an error)."""
        st = self._st
        t = self.clock.now()
        running = [run for run in st.runs if st.active[run.row]]
        for run in running:
            close_step(st, run, t, "aborted")
        await finish_all(st, [(run, "run aborted") for run in running], TestStatus.STOPPED, t)


class _Verdict:
    """Whether the tests of a start, whose rows a worker thread has written, may start (their
    rows committed) or not (rolled back); given once, by the runner."""

    def __init__(self) -> None:
        self._given = threading.Event()
        self._start = False

    def give(self, start: bool) -> None:
        if not self._given.is_set():
            self._start = start
            self._given.set()

    def wait(self) -> bool:
        self._given.wait()
        return self._start


@contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a start of 100,000 tests makes millions of objects
    that all stay alive, and the collector would walk them again and again (40 % of the
    start's time). Reference counting still frees everything else at once. What the start
    leaves alive then goes straight to the oldest generation (``gc.freeze`` and ``unfreeze``
    move lists, not objects): the young collections right after would otherwise walk it all
    twice (0.8 s for 100,000 tests); only full collections, which are rare, look at it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


@dataclass
class Shared:
    """What the requests of one start share: each plan compiled once, and each resolution of
    a plan for a battery, chamber, devices and channel ranges (a thousand channels starting
    one plan resolve it once). Neither is changed by a run (a set step replaces its steps)."""

    programs: dict[int, Program] = field(default_factory=dict)
    resolutions: dict[Hashable, tuple[float | None, dict[int, Resolved], list[float],
                                      list[float], SignalPlan]] = field(default_factory=dict)


def _resolution_key(req: TestRequest) -> Hashable:
    """What a new test's resolved plan depends on (the channel's name only names it in errors,
    and a failed resolution is not kept); identities stand for the objects, which the requests
    hold alive for the whole start."""
    info = req.channel.info
    return (id(req.plan), id(req.battery), id(req.chamber), req.chamber_name,
            tuple((name, id(device)) for name, device in req.devices), req.on_start,
            req.on_stop, info.voltage_min_v, info.voltage_max_v, info.current_max_a,
            info.power_max_w)

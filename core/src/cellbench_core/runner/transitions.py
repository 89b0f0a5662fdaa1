"""Step transitions: a test moves to its next step, passes its message and set steps, ends a
step (its summary row), and ends (output off, status recorded, plugins told).

Per-channel Python: these run on events (a step ends, a limit trips), never per sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np

from cellbench_core.events import Alarm, PlanMessage, StepChanged, TestFinished, TestStatus
from cellbench_core.plan.expr import ExprError, Scope
from cellbench_core.plan.model import ActionKind, ChamberSpec, Message, Quantity, StepSpec
from cellbench_core.plan.program import Passed
from cellbench_core.runner.conditions import QUANTITY_COLUMN
from cellbench_core.runner.limits import limit_message, signal_limit_message
from cellbench_core.runner.records import (
    DeviceWrite,
    ExternalHold,
    Resume,
    Run,
    RunError,
    SteppedRamp,
    TestOutcome,
)
from cellbench_core.runner.resolve import resolve_plan, resolve_steps, step_variables
from cellbench_core.runner.resume import positions, restore
from cellbench_core.runner.state import RunState, rows_of
from cellbench_core.storage import PositionRow, StepRow, StorageFailure, TestEnd
from cellbench_hal import (
    ChamberState,
    ChannelDriver,
    ClimateChamber,
    DeviceError,
    DeviceTimeout,
    NotSupported,
    Step,
    call_with_timeout,
)

log = logging.getLogger(__name__)

_Q = QUANTITY_COLUMN
T = TypeVar("T")


async def advance(st: RunState, run: Run, t: float, group: int | None = None) -> None:
    """Move ``run`` on at clock time ``t`` as its step's end condition group ``group`` says
    (None: to the next step), or finish its test."""
    spec = await next_step(st, run, t, group)
    if spec is not None and await enter(st, run, spec, t):
        step_started(st, [run], spec, t)


async def advance_all(st: RunState, runs: Sequence[Run], t: float) -> None:
    """:func:`advance` each of ``runs`` (tests just started) to its first step, their steps
    applied together (one :meth:`~cellbench_hal.ChannelDriver.apply_bank` per driver) and
    their rows set up together, all runs at one step of one resolved plan at once."""
    ready = [(run, spec) for run in runs if (spec := await next_step(st, run, t)) is not None]
    refused = await apply_steps(st, [(run, run.steps[run.cursor.pc][0]) for run, _ in ready])
    alike: dict[tuple[int, int, int], tuple[StepSpec, list[Run]]] = {}
    for run, spec in ready:
        err = refused.get(run.row)
        if err is not None:
            await finish(st, run, TestStatus.FAILED, f"device error: {err}", t)
            continue
        key = (id(run.steps), id(run.signals), run.cursor.pc)
        alike.setdefault(key, (spec, []))[1].append(run)
    for spec, group in alike.values():
        entered(st, group, spec, t)
        step_started(st, group, spec, t)


async def next_step(st: RunState, run: Run, t: float, group: int | None = None
                    ) -> StepSpec | None:
    """Walk ``run``'s cursor on as :func:`advance` says, passing its messages and set steps,
    to the step it enters next; None when that ended the test."""
    row = run.row
    reason = "plan complete"
    if group is not None and run.cursor.step.action(group).kind is ActionKind.END_TEST:
        reason = f"end test at line {run.cursor.step.line}"
    nxt = run.cursor.advance(group, st.q_last[row])
    for passed in run.cursor.passed:
        problem = await pass_step(st, run, passed, t)
        if problem:
            alarm(st, run, f"channel {run.request.channel.name}: {problem}", t)
            await finish(st, run, TestStatus.FAILED, problem, t)
            return None
    if nxt is None:
        await finish(st, run, TestStatus.FINISHED, reason, t)
        return None
    spec, new_cycle = nxt
    if run.cursor.pc not in run.steps:  # a goto went past the set step of a variable
        unset = ", ".join(sorted(step_variables(spec) - run.cursor.variables.keys()))
        problem = (f"{run.request.plan.source}:{spec.line}: the step reads {unset}, which "
                   "no set step has set yet")
        alarm(st, run, f"channel {run.request.channel.name}: {problem}", t)
        await finish(st, run, TestStatus.FAILED, problem, t)
        return None
    if new_cycle:
        st.cycle[row] = run.cursor.cycle
        st.cycle_t0[row] = t
        st.cycle_ah[row] = st.cycle_wh[row] = 0.0
        st.charged[row, 1] = st.discharged[row, 1] = 0.0
    return spec


def step_started(st: RunState, runs: Sequence[Run], spec: StepSpec, t: float) -> None:
    """Count the step ``spec`` that ``runs`` entered at ``t``: their counters from zero, their
    positions recorded, plugins told."""
    rows = rows_of(runs)
    st.step_t0[rows] = t
    st.step_ah[rows] = st.step_wh[rows] = 0.0
    st.charged[rows, 0] = st.discharged[rows, 0] = 0.0
    st.step_temp_min[rows] = st.step_temp_max[rows] = np.nan
    starts = zip((st.seq[rows] + 1).tolist(), (t - st.test_t0[rows]).tolist(), strict=True)
    for run, (seq, time) in zip(runs, starts, strict=True):
        run.step_no += 1
        run.step_start_seq, run.step_start_time = seq, time
    unix = st.clock.unix(t)
    records = []
    changes = zip(runs, positions(st, runs), st.cycle[rows].tolist(), strict=True)
    for run, state, cycle in changes:
        records.append(PositionRow(run.test_id, run.step_no, run.step_start_seq, unix, state))
        st.announce("cellbench_step_changed", StepChanged(
            run.test_id, run.request.channel.name, run.cursor.step_index, spec.line, cycle,
            spec.text, run.step_start_time))
    st.writer.submit_positions(records)


async def enter(st: RunState, run: Run, spec: StepSpec, t: float) -> bool:
    """Apply the cursor's step ``spec`` to the channel (and its chamber); False if that
    failed and ended the test."""
    step = run.steps[run.cursor.pc][0]
    channel = run.request.channel
    try:
        await call_with_timeout(channel.driver.apply(channel.local, step),
                                st.device_timeout_s, channel.driver_name, "apply")
    except DeviceError as err:
        await finish(st, run, TestStatus.FAILED, f"device error: {err}", t)
        return False
    entered(st, [run], spec, t)
    return True


async def apply_steps(st: RunState, steps: Sequence[tuple[Run, Step]]
                      ) -> dict[int, DeviceError]:
    """Apply each run's step to its channel, one ``apply_bank`` per driver that overrides it
    (one ``apply`` per channel elsewhere, each under its own timeout), the drivers side by
    side; the error of each row whose channel refused."""
    return await _by_bank(
        st, steps, "apply_bank", "apply",
        lambda driver, bank: driver.apply_bank(bank),
        lambda driver, channel, step: driver.apply(channel, step))


async def outputs_off(st: RunState, runs: Sequence[Run]) -> dict[int, DeviceError]:
    """Switch the outputs of ``runs`` off, one ``output_off_bank`` per driver that overrides
    it (one ``output_off`` per channel elsewhere), the drivers side by side; the error of each
    row whose channel refused."""
    return await _by_bank(
        st, [(run, None) for run in runs], "output_off_bank", "output_off",
        lambda driver, bank: driver.output_off_bank([channel for channel, _ in bank]),
        lambda driver, channel, _: driver.output_off(channel))


async def _by_bank(st: RunState, calls: Sequence[tuple[Run, T]], bank_method: str, what: str,
                   bank_call: Callable[[ChannelDriver, list[tuple[int, T]]],
                                       Awaitable[None]],
                   one_call: Callable[[ChannelDriver, int, T], Awaitable[None]]
                   ) -> dict[int, DeviceError]:
    """Make ``calls`` (a run and what its channel is given) per driver: one ``bank_call``
    under one timeout where the driver overrides ``bank_method``, and when that fails with
    anything but a timeout, one ``one_call`` per channel to learn which refused (each under
    its own timeout, as for drivers without it); the error of each refused row."""
    banks: dict[int, list[tuple[Run, T]]] = {}
    for run, arg in calls:
        banks.setdefault(id(run.request.channel.driver), []).append((run, arg))
    refused: dict[int, DeviceError] = {}

    async def bank_of(bank: list[tuple[Run, T]]) -> None:
        channel = bank[0][0].request.channel
        driver = channel.driver
        if getattr(type(driver), bank_method) is not getattr(ChannelDriver, bank_method):
            try:
                await call_with_timeout(
                    bank_call(driver, [(run.request.channel.local, arg) for run, arg in bank]),
                    st.device_timeout_s, channel.driver_name, what)
                return
            except DeviceTimeout as err:  # asking each channel again would wait as long
                refused.update((run.row, err) for run, _ in bank)
                return
            except DeviceError:
                pass  # one channel refused: find out which, one at a time
        for run, arg in bank:
            try:
                await call_with_timeout(one_call(driver, run.request.channel.local, arg),
                                        st.device_timeout_s, channel.driver_name, what)
            except DeviceError as err:
                refused[run.row] = err

    await asyncio.gather(*(bank_of(bank) for bank in banks.values()))
    return refused


def entered(st: RunState, runs: Sequence[Run], spec: StepSpec, t: float) -> None:
    """Set the rows of ``runs`` up for the step ``spec`` their channels now hold (runs at one
    step of one resolved plan: one set of end conditions)."""
    rows = rows_of(runs)
    first = runs[0]
    step, conditions = first.steps[first.cursor.pc]
    st.conditions.set(rows, conditions, first.signals.columns)
    for run in runs:
        st.waits.pop(run.row, None)
        st.external.pop(run.row, None)
        run.step_text = spec.text
    if spec.external is not None:  # at rest until the superior system's first setpoint
        st.external.update((run.row, ExternalHold(spec.external.watchdog_s, t, step))
                           for run in runs)
    if spec.chamber is not None:
        # Not set yet: the chamber changes once every channel in it whose plan has chamber
        # steps has reached one (attached.check_chambers), never under a neighbour's test.
        st.waits.update((run.row, (None, t, False)) for run in runs)
    st.prev_t[rows] = st.prev_v[rows] = st.prev_temp[rows] = np.nan
    st.step_index[rows] = first.cursor.step_index
    st.plan_line[rows] = spec.line


async def continue_test(st: RunState, run: Run, resume: Resume, t: float) -> None:
    """Set ``run``'s row up as the interrupted test left it, write the station's ``on_start``
    to its devices, and apply its step again."""
    restore(st, run, resume, t)
    spec = run.cursor.step
    if not await write_on_start(st, run, t) or not await enter(st, run, spec, t):
        return
    message = (f"resumed at step {resume.step_no} (plan line {spec.line}) after "
               f"{resume.down_s:.0f} s without the station; samples go on from seq "
               f"{resume.last_seq + 1}")
    log.info("test %d on channel %s: %s", run.test_id, run.request.channel.name, message)
    st.writer.submit_call(partial(st.db.add_event, kind="resumed", message=message,
                                  test_id=run.test_id, channel=run.request.channel.name,
                                  unix_time_s=st.clock.unix(t)))


async def set_chamber(st: RunState, run: Run, spec: ChamberSpec) -> str:
    """Hand the chamber step's setpoints to the chamber; return why that failed, or ''."""
    chamber = run.request.chamber
    assert chamber is not None  # checked before the test started
    name = run.request.chamber_label
    st.ramps.pop(name, None)
    try:
        if spec.temperature_c is not None and spec.ramp_k_per_s is not None:
            await _start_ramp(st, name, chamber, spec.temperature_c, spec.ramp_k_per_s)
        elif spec.temperature_c is not None:
            await call_with_timeout(chamber.set_temperature(spec.temperature_c),
                                    st.device_timeout_s, chamber.name, "set_temperature")
        if spec.humidity_pct is not None:
            await call_with_timeout(chamber.set_humidity(spec.humidity_pct),
                                    st.device_timeout_s, chamber.name, "set_humidity")
        await call_with_timeout(chamber.start(), st.device_timeout_s, chamber.name, "start")
    except DeviceError as err:
        return f"chamber error: {err}"
    return ""


async def _start_ramp(st: RunState, name: str, chamber: ClimateChamber, celsius: float,
                      kelvin_per_s: float) -> None:
    """Ramp chamber ``name`` to ``celsius``: in its controller where it can, else by the
    station's hand from the temperature it has now (:func:`advance_ramps` moves it on)."""
    try:
        await call_with_timeout(chamber.ramp_temperature(celsius, kelvin_per_s),
                                st.device_timeout_s, chamber.name, "ramp_temperature")
        return
    except NotSupported:
        pass
    state = st.chamber_reads.get(name)  # this tick's, when the station reads the chamber
    if not isinstance(state, ChamberState):
        state = await call_with_timeout(chamber.read(), st.device_timeout_s, chamber.name,
                                        "read")
    start = state.temperature_c
    st.ramps[name] = SteppedRamp(start, celsius, kelvin_per_s, st.clock.now(), start)
    await call_with_timeout(chamber.set_temperature(start), st.device_timeout_s, chamber.name,
                            "set_temperature")


async def advance_ramps(st: RunState, t: float) -> None:
    """Move the setpoint of each chamber the station ramps by hand to where its ramp is at
    ``t`` (a change under the ramp's resolution waits for the next tick); a chamber that
    refuses fails the tests waiting for it."""
    for name, ramp in list(st.ramps.items()):
        target = ramp.setpoint(t)
        if abs(target - ramp.set_c) < ramp.RESOLUTION_K and target != ramp.final_c:
            continue
        runs = [st.runs[row] for row in st.waits if st.runs[row].request.chamber_label == name]
        if not runs:  # every test that waited for it has gone: the ramp stops where it is
            del st.ramps[name]
            continue
        chamber = runs[0].request.chamber
        assert chamber is not None
        try:
            await call_with_timeout(chamber.set_temperature(target), st.device_timeout_s,
                                    chamber.name, "set_temperature")
        except DeviceError as err:
            del st.ramps[name]
            for run in runs:
                await fail_wait(st, run, f"chamber error while ramping: {err}", t)
            continue
        ramp.set_c = target
        if target == ramp.final_c:
            del st.ramps[name]


async def pass_step(st: RunState, run: Run, passed: Passed, t: float) -> str:
    """Act on a message or set step ``run`` passed; return why the test must fail, or ''."""
    channel = run.request.channel.name
    if isinstance(passed, Message):
        st.writer.submit_call(partial(st.db.add_event, kind="message", message=passed.text,
                                      test_id=run.test_id, channel=channel,
                                      unix_time_s=st.clock.unix(t)))
        st.announce("cellbench_message", PlanMessage(run.test_id, channel, passed.line,
                                                     passed.text))
        return ""
    where = f"{run.request.plan.source}:{passed.line}"
    cursor, req, row = run.cursor, run.request, run.row
    last = st.q_last[row]
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
            steps, bounds, delays = resolve_plan(req, cursor.program, capacity, variables)
            st.bound[row], st.delay[row] = bounds, delays
        else:
            using = [pc for pc, ins in enumerate(cursor.program.instructions)
                     if isinstance(ins, StepSpec) and step_variables(ins) & changed]
            steps = {**run.steps, **resolve_steps(
                req, cursor.program, using, Scope(variables, capacity, req.battery),
                st.bound[row].tolist())}
    except RunError as err:
        if capacity != cursor.capacity_ah:
            return f"set capacity {capacity:.4g} Ah at {where}: {err}"
        return f"set {', '.join(sorted(changed))} at {where}: {err}"
    run.steps, cursor.variables, cursor.capacity_ah = steps, variables, capacity
    for counter in passed.resets:
        reset_counter(st, row, counter, t)
    for write in run.signals.writes.get(id(passed), ()):
        problem = await write_signal(st, run, write, t)
        if problem:
            return problem
    return ""


async def write_signal(st: RunState, run: Run | None, write: DeviceWrite, t: float) -> str:
    """Write ``write`` to its device, and record it as a ``device_write`` event (of ``run``'s
    test; None: of the station); return why it failed, or ''."""
    text = f"{write.name} = {write.value:g}{f' {write.unit}' if write.unit else ''}"
    try:
        if write.device is None:
            raise DeviceError(write.name.split(".", 1)[0], "its signals are not known")
        await call_with_timeout(write.device.write(write.name.split(".", 1)[1], write.value),
                                st.device_timeout_s, write.name.split(".", 1)[0], "write")
    except DeviceError as err:
        return f"writing {text} ({write.why}) failed: {err}"
    # A write made as the station stops because its database failed stands unrecorded: the
    # station's other on_stop writes come first.
    with contextlib.suppress(StorageFailure):
        st.writer.submit_call(partial(
            st.db.add_event, kind="device_write", message=f"{text} ({write.why})",
            test_id=None if run is None else run.test_id,
            channel=None if run is None else run.request.channel.name,
            unix_time_s=st.clock.unix(t),
            data={"signal": write.name, "value": write.value, "unit": write.unit,
                  "source": write.why}))
    return ""


async def write_on_start(st: RunState, run: Run, t: float) -> bool:
    """Write the station's ``on_start`` values for ``run``'s test to their devices; False if
    one failed and ended the test (with an alarm; output off and ``on_stop`` written)."""
    for write in run.signals.on_start:
        problem = await write_signal(st, run, write, t)
        if problem:
            alarm(st, run, f"channel {run.request.channel.name}: {problem}", t)
            await finish(st, run, TestStatus.FAILED, problem, t)
            return False
    return True


def reset_counter(st: RunState, row: int, counter: str, t: float) -> None:
    """Set a cycle or test counter (of plan.model.COUNTERS) of ``row`` to zero at ``t``."""
    if counter == "cycle_time":
        st.cycle_t0[row] = t
        return
    scope, unit = (1 if counter.startswith("cycle_") else 2), int(counter.endswith("_wh"))
    totals = ((st.cycle_ah, st.cycle_wh), (st.total_ah, st.total_wh))[scope - 1]
    totals[unit][row] = 0.0
    st.charged[row, scope, unit] = st.discharged[row, scope, unit] = 0.0


def close_step(st: RunState, run: Run, t: float, reason: str) -> None:
    """Write the summary row of the step ``run`` is leaving."""
    row = run.row
    if run.step_no == 0 or run.step_start_seq > st.seq[row]:
        return  # the step never produced a sample
    spec = run.cursor.step
    st.writer.submit_step(StepRow(
        test_id=run.test_id, step_no=run.step_no, step_index=run.cursor.step_index,
        plan_line=spec.line, cycle=int(st.cycle[row]), mode=spec.mode.value,
        text=spec.text, start_seq=run.step_start_seq, end_seq=int(st.seq[row]),
        start_test_time_s=run.step_start_time, end_test_time_s=t - st.test_t0[row],
        ah=float(st.step_ah[row]), wh=float(st.step_wh[row]), end_reason=reason,
        charge_ah=float(st.charged[row, 0, 0]), discharge_ah=float(st.discharged[row, 0, 0]),
        charge_wh=float(st.charged[row, 0, 1]), discharge_wh=float(st.discharged[row, 0, 1]),
        temperature_min_c=float(st.step_temp_min[row]),
        temperature_max_c=float(st.step_temp_max[row])))


async def finish(st: RunState, run: Run, status: TestStatus, reason: str, t: float) -> None:
    """End ``run``'s test: output off, the station's ``on_stop`` written to its devices,
    conditions cleared, status stored, plugins told."""
    await finish_all(st, [(run, reason)], status, t)


async def finish_all(st: RunState, ends: Sequence[tuple[Run, str]], status: TestStatus,
                     t: float) -> None:
    """End the test of each ``(run, reason)`` of ``ends`` as :func:`finish` does, every
    output off first, together (one ``output_off_bank`` per driver that has one: a station
    stopping thousands of tests switches them off in one go), then each test's ``on_stop``."""
    st.generation += 1
    for run, _ in ends:
        row = run.row
        st.drop_signals(row, run.signals.columns)
        st.waits.pop(row, None)
        st.external.pop(row, None)
        st.active[row] = False
        st.paused[row] = run.paused = False
        st.conditions.clear(row)
    refused = await outputs_off(st, [run for run, _ in ends])
    for run, reason in ends:
        ended = status
        channel = run.request.channel
        if run.row in refused:
            reason = f"{reason}; switching the output off failed: {refused[run.row]}"
            ended = TestStatus.FAILED
        for write in run.signals.on_stop:  # every one, whatever became of the others
            problem = await write_signal(st, run, write, t)
            if problem:
                alarm(st, run, f"channel {channel.name}: {problem}", t)
                reason = f"{reason}; {problem}"
                ended = TestStatus.FAILED
        run.outcome = TestOutcome(run.test_id, channel.name, ended, reason)
        st.ended.append(TestEnd(run.test_id, ended.value, reason, st.clock.unix(t)))
        st.announce("cellbench_test_finished", TestFinished(
            run.test_id, channel.name, ended, reason, t - st.test_t0[run.row]))


def alarm(st: RunState, run: Run, message: str, t: float) -> None:
    """Record an alarm of ``run``'s test and tell the plugins."""
    channel = run.request.channel.name
    with contextlib.suppress(StorageFailure):  # the database failed: the plugins still hear it
        st.writer.submit_call(partial(st.db.add_event, kind="alarm", message=message,
                                      test_id=run.test_id, channel=channel,
                                      unix_time_s=st.clock.unix(t)))
    st.announce("cellbench_alarm", Alarm(channel, run.test_id, message))


async def fail_wait(st: RunState, run: Run, reason: str, t: float) -> None:
    """Fail ``run``'s test in its chamber step."""
    st.waits.pop(run.row, None)
    close_step(st, run, t, reason)
    alarm(st, run, f"channel {run.request.channel.name}: {reason}", t)
    await finish(st, run, TestStatus.FAILED, reason, t)


async def trip(st: RunState, run: Run, t: float) -> None:
    """End ``run``'s test: a reading or a signal crossed a safety limit."""
    row = run.row
    message = limit_message(st.v[row], st.i[row], st.temp[row], st.bound[row], st.delay[row],
                            t - st.beyond_since[row])
    if not message and run.signals.limited:
        message = signal_limit_message(run.signals, st.q_last[row], st.signal_bound[row],
                                       st.signal_delay[row], t - st.signal_since[row])
    message = message or "safety limit"
    close_step(st, run, t, message)
    alarm(st, run, f"channel {run.request.channel.name}: {message}", t)
    await finish(st, run, TestStatus.STOPPED, message, t)

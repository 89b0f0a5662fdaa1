"""External steps: a superior system sets the channel's setpoints, under the test's limits.

While a row is in an ``external`` step (:class:`~cellbench_core.plan.model.ExternalSpec`),
:func:`set_setpoint` checks each setpoint against the channel's ranges and the test's safety
limits (the plan's and the battery's), refuses it with nothing changed or applies it to the
channel at once (not at the next tick: the latency is the driver's), and records it as a
``setpoint`` event with the sender's identity. Every sample of the row carries the setpoint it
was taken under (:data:`SETPOINT_COLUMNS`). :func:`check_watchdogs`, once per tick, switches
off the output of a row that heard nothing for its watchdog period and ends its step with an
alarm; the plan then goes on with its next step. The safety limits and the step's end
conditions are checked on every sample as for any step.
"""

from __future__ import annotations

import math
from dataclasses import replace
from enum import StrEnum
from functools import partial

import numpy as np

from cellbench_core.events import TestStatus
from cellbench_core.runner.limits import beyond_limits
from cellbench_core.runner.records import ExternalHold, Run, RunError
from cellbench_core.runner.state import RunState
from cellbench_core.runner.transitions import advance, alarm, close_step, finish
from cellbench_hal import DeviceError, OutOfRange, Step, StepMode, call_with_timeout, step_beyond
from cellbench_hal.types import FloatArray, IntArray

#: The modes a superior system may set.
EXTERNAL_MODES = (StepMode.REST, StepMode.CC, StepMode.CV, StepMode.CP)

#: The aux columns every sample of an external step records: the mode (its index in
#: EXTERNAL_MODES: 0 rest, 1 cc, 2 cv, 3 cp) and the values it sets (NaN where it sets none;
#: a CV step's current is its current limit).
SETPOINT_COLUMNS = ("setpoint_mode", "setpoint_current_a", "setpoint_voltage_v",
                    "setpoint_power_w")


class Refusal(StrEnum):
    """Why a setpoint was refused."""

    NOT_EXTERNAL = "not in an external step"
    PAUSED = "paused"
    OUT_OF_RANGE = "out of range"
    DEVICE = "device error"


class SetpointRefused(RunError):
    """A setpoint or keepalive was refused; ``why`` says the kind. Nothing changed, unless
    ``why`` is DEVICE: then the test failed with its output off."""

    def __init__(self, why: Refusal, message: str) -> None:
        super().__init__(message)
        self.why = why


def hold_of(st: RunState, run: Run) -> ExternalHold:
    """The external hold of ``run``'s running step; refused if the step is no external one."""
    hold = st.external.get(run.row)
    if hold is None or not st.active[run.row]:
        raise SetpointRefused(Refusal.NOT_EXTERNAL, f"channel {run.request.channel.name} is "
                              f"not in an external step (step: {run.step_text or 'none'})")
    return hold


def keepalive(st: RunState, run: Run) -> None:
    """Restart the watchdog of ``run``'s external step."""
    hold_of(st, run).contact_t = st.clock.now()


def setpoint_problem(st: RunState, run: Run, setpoint: Step) -> str:
    """What is wrong with ``setpoint`` on ``run``'s channel and under its limits, or ''."""
    if setpoint.mode not in EXTERNAL_MODES:
        return f"mode {setpoint.mode.value} cannot be set externally (only rest, cc, cv, cp)"
    channel = run.request.channel
    beyond = step_beyond(setpoint, channel.info)
    if beyond:
        return f"{beyond} (channel {channel.name}'s range)"
    bounds = st.bound[run.row].tolist()
    problem = beyond_limits(setpoint, bounds)
    if problem:
        return problem
    voltage = float(st.v[run.row])
    if setpoint.mode is StepMode.CP and setpoint.power_w and voltage > 0:
        # The current a power draws is known only at the voltage there is: judged at the last
        # sample's (the limits still trip on the samples that follow).
        current = setpoint.power_w / voltage
        column, amps = (2, current) if current > 0 else (3, -current)
        if amps > bounds[column]:
            return (f"{setpoint.power_w:g} W at {voltage:.4g} V is {current:.4g} A, beyond the "
                    f"safety limit current_max {bounds[column]:g} A")
    return ""


async def set_setpoint(st: RunState, run: Run, setpoint: Step, identity: str) -> Step:
    """Apply ``setpoint`` to ``run``'s channel in its external step, restart its watchdog and
    record it; return the step applied (with the test's limits). Refused (SetpointRefused)
    with nothing changed if the row is in no external step or the setpoint does not fit."""
    hold = hold_of(st, run)
    if run.paused or st.paused[run.row]:
        raise SetpointRefused(Refusal.PAUSED, f"channel {run.request.channel.name} is paused; "
                              "resume it first")
    problem = setpoint_problem(st, run, setpoint)
    if problem:
        raise SetpointRefused(Refusal.OUT_OF_RANGE, problem)
    step = replace(setpoint, limits=hold.setpoint.limits)
    channel, row = run.request.channel, run.row
    try:
        await call_with_timeout(channel.driver.apply(channel.local, step),
                                st.device_timeout_s, channel.driver_name, "apply")
    except OutOfRange as err:  # the instrument refused it: it holds the previous setpoint
        raise SetpointRefused(Refusal.OUT_OF_RANGE, f"{channel.driver_name}: {err}") from None
    except DeviceError as err:
        if st.external.get(row) is hold:
            reason = f"device error on an external setpoint: {err}"
            t = st.clock.now()
            close_step(st, run, float(st.last_t[row]), reason)
            alarm(st, run, f"channel {channel.name}: {reason}", t)
            await finish(st, run, TestStatus.FAILED, reason, t)
        raise SetpointRefused(Refusal.DEVICE, str(err)) from None
    if st.external.get(row) is not hold or st.paused[row]:
        await _restore(st, run)
        why = Refusal.PAUSED if st.paused[row] else Refusal.NOT_EXTERNAL
        raise SetpointRefused(why, f"channel {channel.name}'s external step ended or paused "
                              "while the setpoint was being applied; it was undone")
    t = st.clock.now()
    hold.setpoint, hold.contact_t = step, t
    st.generation += 1
    st.writer.submit_call(partial(
        st.db.add_event, kind="setpoint", message=f"{identity}: {describe_setpoint(step)}",
        test_id=run.test_id, channel=channel.name, unix_time_s=st.clock.unix(t),
        data={"identity": identity, "mode": step.mode.value, "current_a": step.current_a,
              "voltage_v": step.voltage_v, "power_w": step.power_w}))
    return step


async def _restore(st: RunState, run: Run) -> None:
    """Put the channel back as the runner wants it after a setpoint raced the end of its
    external step: off if the test ended or is paused, else the step it runs now."""
    channel, row = run.request.channel, run.row
    try:
        if st.active[row] and not st.paused[row]:
            step = st.external[row].setpoint if row in st.external else run_step(st, row)
            await call_with_timeout(channel.driver.apply(channel.local, step),
                                    st.device_timeout_s, channel.driver_name, "apply")
        else:
            await call_with_timeout(channel.driver.output_off(channel.local),
                                    st.device_timeout_s, channel.driver_name, "output_off")
    except DeviceError as err:
        if st.active[row]:
            reason = f"device error restoring the step after an external setpoint: {err}"
            t = st.clock.now()
            close_step(st, run, float(st.last_t[row]), reason)
            alarm(st, run, f"channel {channel.name}: {reason}", t)
            await finish(st, run, TestStatus.FAILED, reason, t)


def pausing(st: RunState, run: Run) -> None:
    """``run`` is about to be paused (its output goes off at the next tick, before it is
    measured): an external step is at rest from then on, and after the resume until the next
    setpoint."""
    hold = st.external.get(run.row)
    if hold is not None:
        hold.setpoint = run_step(st, run.row)


def run_step(st: RunState, row: int) -> Step:
    """The setpoint of the step ``row`` runs as the plan has it (an external step's: rest)."""
    run = st.runs[row]
    return run.steps[run.cursor.pc][0]


def describe_setpoint(step: Step) -> str:
    """A setpoint as rci writes it: ``CC 1.25 A``, ``CV 4.2 V 0.5 A``, ``CP -3 W``, ``REST``."""
    if step.mode is StepMode.CC:
        return f"CC {step.current_a:g} A"
    if step.mode is StepMode.CV:
        limit = "" if step.current_a is None else f" {step.current_a:g} A"
        return f"CV {step.voltage_v:g} V{limit}"
    if step.mode is StepMode.CP:
        return f"CP {step.power_w:g} W"
    return step.mode.value.upper()


async def check_watchdogs(st: RunState) -> None:
    """End the external step of every row whose watchdog ran out: output off, an alarm, the
    step closed, the plan on to its next step. A paused row's watchdog waits."""
    t = st.clock.now()
    for row, hold in list(st.external.items()):
        if st.paused[row]:
            # Off meanwhile, and at rest after the resume (which applies the step's own
            # setpoint) until the next setpoint; the watchdog counts again from the resume.
            hold.contact_t, hold.setpoint = t, run_step(st, row)
            continue
        if t - hold.contact_t <= hold.watchdog_s:
            continue
        run = st.runs[row]
        channel = run.request.channel
        reason = (f"external watchdog: no setpoint or keepalive for {t - hold.contact_t:.3g} s "
                  f"(watchdog {hold.watchdog_s:g} s); output off")
        del st.external[row]
        t_row = float(st.last_t[row])
        close_step(st, run, t_row, reason)
        alarm(st, run, f"channel {channel.name}: {reason}", t)
        try:
            await call_with_timeout(channel.driver.output_off(channel.local),
                                    st.device_timeout_s, channel.driver_name, "output_off")
        except DeviceError as err:
            await finish(st, run, TestStatus.FAILED, f"{reason}; switching it off failed: "
                         f"{err}", t)
            continue
        await advance(st, run, t_row)


def add_setpoint_columns(st: RunState, rows: IntArray, cols: dict[str, FloatArray]) -> None:
    """Add :data:`SETPOINT_COLUMNS` to the batch ``cols`` of ``rows``: each external row's
    setpoint (a paused one's: rest), NaN (not stored) for the other rows."""
    held = np.fromiter(st.external, np.int64, len(st.external))
    positions = np.flatnonzero(np.isin(rows, held))
    if not len(positions):
        return
    values = np.full((len(SETPOINT_COLUMNS), len(rows)), np.nan)
    for position in positions.tolist():
        row = int(rows[position])
        step = run_step(st, row) if st.paused[row] else st.external[row].setpoint  # off
        values[:, position] = (EXTERNAL_MODES.index(step.mode), _number(step.current_a),
                               _number(step.voltage_v), _number(step.power_w))
    for name, column in zip(SETPOINT_COLUMNS, values, strict=True):
        cols["aux:" + name] = column


def _number(value: float | None) -> float:
    return math.nan if value is None else value

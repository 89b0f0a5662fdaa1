"""The station's devices and chambers that running tests see: their signals read once a tick
(recorded as aux columns, compared by end conditions), chamber temperatures handed to the
channels as ambient, and chamber steps: the channels in one chamber meet at their chamber
steps before it changes (a barrier), then wait for it to be stable.

Per-channel Python where it is per channel: chamber steps are rare, and a tick reads each
device once whatever the number of channels it serves.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from functools import partial
from typing import cast

import numpy as np

from cellbench_core.events import TestStatus
from cellbench_core.plan.model import ChamberSpec
from cellbench_core.runner.records import ChamberBand, Control, Run
from cellbench_core.runner.state import RunState
from cellbench_core.runner.transitions import (
    advance,
    advance_ramps,
    alarm,
    close_step,
    fail_wait,
    finish,
    set_chamber,
)
from cellbench_hal import (
    ChamberState,
    DeviceError,
    OsiDevice,
    Reading,
    call_with_timeout,
)
from cellbench_hal.types import FloatArray, IntArray

log = logging.getLogger(__name__)


async def check_chambers(st: RunState) -> None:
    """Set the chambers whose channels have all reached their chamber steps; move on the
    channels whose chamber has been stable long enough; fail those that waited too long for
    either (per-channel Python: chamber steps are rare)."""
    t = st.clock.now()
    await release_barriers(st, t)
    if st.ramps:
        await advance_ramps(st, t)
    for row, (since, began, applied) in list(st.waits.items()):
        run = st.runs[row]
        if st.paused[row] or row in st.fault_paused or row not in st.waits:
            continue  # the wait stands still with the step, or ended this tick
        chamber = run.request.chamber
        spec = run.cursor.step.chamber
        assert chamber is not None and spec is not None
        if not applied:
            if t - began >= spec.timeout_s:
                await fail_wait(st, run, f"the other channels in chamber "
                                         f"{run.request.chamber_label!r} did not reach their "
                                         f"chamber steps within {spec.timeout_s:g} s "
                                         f"(line {run.cursor.step.line})", t)
            continue
        name = run.request.chamber_label
        if name not in st.chamber_reads:  # a chamber the station does not read each tick
            try:
                st.chamber_reads[name] = await call_with_timeout(
                    chamber.read(), st.device_timeout_s, chamber.name, "read")
            except DeviceError as err:
                st.chamber_reads[name] = err
        state = st.chamber_reads[name]
        if isinstance(state, DeviceError):  # a fault: the station's on_fault acts on it
            st.waits[row] = (None, began, True)
            if t - began >= spec.timeout_s:
                await fail_wait(st, run, f"the chamber was not stable within "
                                      f"{spec.timeout_s:g} s (line {run.cursor.step.line})", t)
            continue
        # Against the step's setpoint, not the controller's: a ramping one moves its own.
        stable = (run.request.chamber_label not in st.ramps and spec.holds(
            state.temperature_c, state.humidity_pct, state.setpoint_c))
        since = (since if since is not None else t) if stable else None
        if since is not None and t - since >= spec.stable_s:
            del st.waits[row]
            if run.request.chamber_name is not None:
                st.bands[run.request.chamber_name] = ChamberBand(
                    spec, run.request.chamber_band_grace_s)
            close_step(st, run, t, "chamber stable")
            await advance(st, run, t, run.cursor.step.ends - 1)
        elif t - began >= spec.timeout_s:
            await fail_wait(st, run, f"the chamber was not stable within "
                                  f"{spec.timeout_s:g} s (line {run.cursor.step.line})", t)
        else:
            st.waits[row] = (since, began, True)


async def release_barriers(st: RunState, t: float) -> None:
    """Set each chamber whose channels with chamber steps in their plans are all in one now;
    when they ask for different climates, fail the ones that just arrived with an alarm that
    names every channel's setpoint (no silent winner)."""
    arrived: dict[int, list[Run]] = {}  # id(chamber) -> runs whose setpoint is not set yet
    for row, (_, _, applied) in st.waits.items():
        if not applied:
            arrived.setdefault(id(st.runs[row].request.chamber), []).append(st.runs[row])
    released: list[list[Run]] = []
    for runs in arrived.values():
        chamber = runs[0].request.chamber
        peers = [peer for peer in st.runs if st.active[peer.row]
                 and peer.request.chamber is chamber and peer.chamber_steps]
        if any(peer.row not in st.waits for peer in peers):
            continue  # a channel is still on its way to its chamber step
        asked = {_setpoint(peer) for peer in peers}
        if len(asked) > 1:
            wanted = "; ".join(f"channel {peer.request.channel.name}: {_setpoint(peer)}"
                               for peer in peers)
            for run in runs:
                await fail_wait(st, run, f"the tests in chamber {run.request.chamber_label!r} "
                                         f"ask for different climates at once ({wanted})", t)
            continue
        if runs[0].request.chamber_name is not None:  # a new climate: the old band is gone
            st.bands.pop(runs[0].request.chamber_name, None)
        released.append(runs)
    # Every chamber released this tick is set at once: controllers answer in tens of ms each.
    problems = await asyncio.gather(*(set_chamber(st, runs[0], _spec(runs[0]))
                                      for runs in released))
    for runs, problem in zip(released, problems, strict=True):
        for run in runs:
            if problem:
                await fail_wait(st, run, problem, t)
            else:  # the step's timeout still counts from when the channel reached it
                st.waits[run.row] = (None, st.waits[run.row][1], True)


def _spec(run: Run) -> ChamberSpec:
    """The chamber step ``run`` is in."""
    spec = run.cursor.step.chamber
    assert spec is not None
    return spec


def _setpoint(run: Run) -> str:
    """What ``run``'s chamber step (it is in one) asks of the chamber, for messages."""
    return _spec(run).describe_climate()


async def read_attached(st: RunState) -> dict[str, tuple[float, set[int]]]:
    """Read every attached device and chamber once: each signal's value (NaN if its device
    failed) and the channels that see it. Chambers also set their channels' ambient."""
    names = list(st.attached)
    results = await asyncio.gather(*(call_with_timeout(
        st.attached[n][0].read(), st.device_timeout_s, n, "read") for n in names),
        return_exceptions=True)
    signals: dict[str, tuple[float, set[int]]] = {}
    for name, result in zip(names, results, strict=True):
        device, channels = st.attached[name]
        if isinstance(result, BaseException):
            if not isinstance(result, DeviceError):
                raise result
            if name not in st.failing:
                log.warning("%s: %s; its signals are recorded as missing", name, result)
                st.failing.add(name)
            values: dict[str, float] = {s.name: math.nan for s in getattr(
                device, "signals", ())} if isinstance(device, OsiDevice) else {
                "temperature": math.nan}
            if not isinstance(device, OsiDevice):
                st.chamber_reads[name] = result
                await chamber_health(st, name, channels, str(result))
        elif isinstance(result, ChamberState):
            st.failing.discard(name)
            st.chamber_reads[name] = result
            values = {"temperature": result.temperature_c}
            if result.humidity_pct is not None:
                values["humidity"] = result.humidity_pct
            set_ambient(st, channels, result.temperature_c)
            await chamber_health(st, name, channels, result.fault or _band_fault(st, name, result))
        else:
            st.failing.discard(name)
            readings = cast(Mapping[str, Reading], result)
            values = {signal: reading.value for signal, reading in readings.items()}
        for signal, value in values.items():
            signals[f"{name}.{signal}"] = (value, channels)
    return signals


def _band_fault(st: RunState, name: str, state: ChamberState) -> str:
    """Whether chamber ``name`` has left the band its last chamber step found it stable in for
    too long ('' if not, or if no test with chamber steps runs inside any more: the band dies
    with them)."""
    band = st.bands.get(name)
    if band is None:
        return ""
    if not any(st.active[run.row] and run.chamber_steps for run in st.runs
               if run.request.chamber_name == name):
        del st.bands[name]
        return ""
    return band.fault(state, st.clock.now())


async def chamber_health(st: RunState, name: str, channels: set[int], fault: str) -> None:
    """Act when chamber ``name`` starts or stops reporting a fault (``fault`` empty: it is
    well): each running test inside is paused (output off, until the chamber is back) or ended
    with an alarm, as its ``chamber_on_fault`` says."""
    if fault == st.chamber_faults.get(name, ""):
        return
    t = st.clock.now()
    runs = [run for number in sorted(channels) if (run := st.run_of.get(number)) is not None
            and st.active[run.row]]
    if fault:
        st.chamber_faults[name] = fault
        for run in runs:
            what = f"channel {run.request.channel.name}: chamber {name!r}: {fault}"
            if run.request.chamber_on_fault == "end":
                reason = f"chamber {name!r}: {fault}"
                close_step(st, run, float(st.last_t[run.row]), reason)
                alarm(st, run, what, t)
                await finish(st, run, TestStatus.FAILED, reason, t)
            else:
                alarm(st, run, f"{what}; the test is paused, output off, until the chamber is "
                               f"back", t)
                if not run.paused:  # an operator's pause stays the operator's to end
                    st.fault_paused[run.row] = name
                    st.actions.append((run, Control.PAUSE))
        return
    del st.chamber_faults[name]
    log.info("chamber %r is back", name)
    for row, chamber in list(st.fault_paused.items()):
        if chamber == name:
            del st.fault_paused[row]
            run = st.runs[row]
            if st.active[row]:
                st.writer.submit_call(partial(
                    st.db.add_event, kind="chamber_back", test_id=run.test_id,
                    channel=run.request.channel.name, unix_time_s=st.clock.unix(t),
                    message=f"chamber {name!r} is back: the test goes on"))
                st.actions.append((run, Control.RESUME))


def fill_signals(st: RunState, rows: IntArray, q: FloatArray) -> None:
    """Put this tick's signal values into the columns of the rows whose steps end on them or
    whose limits watch them (NaN: missing); one numpy assignment for every row."""
    names, user_rows, columns, signal = st.signal_map
    values = np.array([st.signals_now.get(name, math.nan) for name in names])
    position = np.full(len(st.active), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    at = position[user_rows]
    here = at >= 0
    q[at[here], columns[here]] = values[signal[here]]


def set_ambient(st: RunState, channels: set[int], celsius: float) -> None:
    """Hand a chamber's temperature to the running channels it holds."""
    if not math.isfinite(celsius):
        return
    for number in channels:
        run = st.run_of.get(number)
        if run is not None and st.active[run.row]:
            ref = run.request.channel
            ref.driver.set_ambient(ref.local, celsius)

"""The tick: every driver measured at once, then every sample of every channel handled at once.

One loop ticks at the sample period. Each tick asks every channel driver for its samples (all
drivers concurrently, each call under a timeout), then updates counters, checks safety limits and
end conditions for all channels at once with numpy, and hands the batch to the storage writer.
Only the rare events (a step ends, a limit trips, a device fails) drop into per-channel Python.
Operators' requests (stop, pause, resume, next step) are applied at the start of a tick.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import numpy as np

from cellbench_core.events import TestStatus
from cellbench_core.plan.model import Quantity
from cellbench_core.plan.normalise import end_reason
from cellbench_core.runner.attached import check_chambers, fill_signals, read_attached
from cellbench_core.runner.conditions import COLUMNS, QUANTITY_COLUMN
from cellbench_core.runner.external import add_setpoint_columns, check_watchdogs
from cellbench_core.runner.limits import signals_tripped
from cellbench_core.runner.records import Control
from cellbench_core.runner.state import RunState
from cellbench_core.runner.transitions import (
    advance,
    alarm,
    close_step,
    finish,
    finish_all,
    trip,
)
from cellbench_core.storage import SampleRows
from cellbench_hal import ChannelDriver, DeviceError, call_with_timeout
from cellbench_hal.types import FloatArray, IntArray

_Q = QUANTITY_COLUMN


async def measure(st: RunState, driver: ChannelDriver, name: str) -> Any:
    """One driver's samples, under the device timeout."""
    return await call_with_timeout(driver.measure(), st.device_timeout_s, name, "measure")


def record_ends(st: RunState) -> None:
    """Hand the tests that ended to the writer: recorded after their last samples, in one
    transaction, without the event loop waiting for the database."""
    if st.ended:
        st.writer.submit_call(partial(st.db.finish_tests, st.ended))
        st.ended = []


async def tick(st: RunState) -> None:
    """One tick: apply requests, measure and handle every sample, move on chamber waits."""
    st.generation += 1
    try:
        await tick_drivers(st)
        if st.external:
            await check_watchdogs(st)
        if st.waits:
            await check_chambers(st)
    finally:
        record_ends(st)


async def tick_drivers(st: RunState) -> None:
    """Apply operators' requests, read attached devices, measure every driver with a running
    channel, and handle the samples (several of one channel in rounds, oldest first)."""
    if st.stop:
        await handle_stops(st)
    st.chamber_reads.clear()
    signals = await read_attached(st) if st.attached else {}
    if st.actions:  # after the devices were read: a chamber's fault pauses its tests at once
        await handle_actions(st)
    st.signals_now = {name: value for name, (value, _) in signals.items()}
    drivers = [(d, name) for key, (d, name) in st.drivers.items()
               if st.active[st.row_of[key][st.row_of[key] >= 0]].any()]
    results: list[Any]
    if len(drivers) == 1:  # the common case: skip gather's task per driver
        try:
            results = [await measure(st, *drivers[0])]
        except DeviceError as err:
            results = [err]
    else:
        results = await asyncio.gather(*(measure(st, d, name) for d, name in drivers),
                                       return_exceptions=True)
    parts = []
    for (driver, name), result in zip(drivers, results, strict=True):
        if isinstance(result, DeviceError):
            await fail_driver(st, driver, f"device error: {result}")
            continue
        if isinstance(result, BaseException):
            raise result
        row_of = st.row_of[id(driver)]
        local = result.channel
        if local.dtype.kind not in "iu" or (
                len(local) and (local.min() < 0 or local.max() >= len(row_of))):
            await fail_driver(st, driver, f"device error: {name} reported "
                                    "samples of a channel it does not have")
            continue
        rows = row_of[local]
        keep = rows >= 0
        keep[keep] = st.active[rows[keep]]
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
        numbers = st.channel_no[rows]
        for name, (value, channels) in signals.items():
            sees = np.isin(numbers, np.fromiter(channels, np.int64, len(channels)))
            if sees.any():
                cols["aux:" + name] = np.where(sees, value, np.nan)
    if st.external:
        add_setpoint_columns(st, rows, cols)
    st.ticks += 1
    # More than one sample of a channel in this batch? With repeated indices, the last
    # assignment wins, so some position would not read back its own number.
    positions = np.arange(len(rows))
    st.seen[rows] = positions
    repeated = bool((st.seen[rows] != positions).any())
    if not repeated:
        await process(st, rows, cols)
        return
    # Several samples of one channel in one batch: handle them in rounds, oldest first.
    order = np.lexsort((cols["time_s"], rows))
    sorted_rows = rows[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
    rank = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
    for r in range(int(rank.max()) + 1):
        pick = order[rank == r]
        pick = pick[st.active[rows[pick]]]
        if len(pick):
            await process(st, rows[pick], {k: c[pick] for k, c in cols.items()})


async def process(st: RunState, rows: IntArray, cols: dict[str, FloatArray]) -> None:
    """Handle one sample of each of ``rows``: counters, quantities, safety limits, end
    conditions, the writer; then the rows that tripped or ended a step."""
    t, v, i, temp = cols["time_s"], cols["voltage_v"], cols["current_a"], cols["temperature_c"]
    dt = t - st.last_t[rows]
    st.last_t[rows] = t
    paused = st.paused[rows]
    if paused.any():  # a paused step's time stands still
        st.step_t0[rows[paused]] += dt[paused]
    p = v * i
    dah, dwh = i * dt / 3600.0, p * dt / 3600.0
    st.step_ah[rows] += dah
    st.step_wh[rows] += dwh
    st.cycle_ah[rows] += dah
    st.cycle_wh[rows] += dwh
    st.total_ah[rows] += dah
    st.total_wh[rows] += dwh
    amounts = np.stack((dah, dwh), axis=1)[:, None, :]  # broadcast over the three scopes
    st.charged[rows] += np.where(amounts > 0, amounts, 0.0)
    st.discharged[rows] -= np.where(amounts < 0, amounts, 0.0)
    charged, discharged = st.charged[rows], st.discharged[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        since = t - st.prev_t[rows]  # NaN on a step's first sample: no rate yet
        dv_dt = (v - st.prev_v[rows]) / since
        dtemp_dt = (temp - st.prev_temp[rows]) / since
    st.prev_t[rows], st.prev_v[rows], st.prev_temp[rows] = t, v, temp
    st.step_temp_min[rows] = np.fmin(st.step_temp_min[rows], temp)  # fmin: NaN is no reading
    st.step_temp_max[rows] = np.fmax(st.step_temp_max[rows], temp)
    st.seq[rows] += 1
    st.v[rows], st.i[rows], st.temp[rows] = v, i, temp
    step_time = t - st.step_t0[rows]
    test_time = t - st.test_t0[rows]
    step_ah, step_wh = st.step_ah[rows], st.step_wh[rows]

    q = np.full((len(rows), COLUMNS), np.nan)
    if st.signal_users:
        fill_signals(st, rows, q)
    q[:, _Q[Quantity.VOLTAGE]] = v
    q[:, _Q[Quantity.CURRENT]] = i
    q[:, _Q[Quantity.ABS_CURRENT]] = np.abs(i)
    q[:, _Q[Quantity.POWER]] = p
    q[:, _Q[Quantity.ABS_POWER]] = np.abs(p)
    q[:, _Q[Quantity.TEMPERATURE]] = temp
    q[:, _Q[Quantity.STEP_TIME]] = step_time
    q[:, _Q[Quantity.TEST_TIME]] = test_time
    q[:, _Q[Quantity.CYCLE_TIME]] = t - st.cycle_t0[rows]
    q[:, _Q[Quantity.STEP_AH]] = step_ah
    q[:, _Q[Quantity.ABS_STEP_AH]] = np.abs(step_ah)
    q[:, _Q[Quantity.STEP_WH]] = step_wh
    q[:, _Q[Quantity.ABS_STEP_WH]] = np.abs(step_wh)
    for scope, prefix in enumerate(("step", "cycle", "test")):
        for unit, name in enumerate(("ah", "wh")):
            q[:, _Q[Quantity(f"{prefix}_charge_{name}")]] = charged[:, scope, unit]
            q[:, _Q[Quantity(f"{prefix}_discharge_{name}")]] = discharged[:, scope, unit]
    q[:, _Q[Quantity.CYCLE_AH]] = st.cycle_ah[rows]
    q[:, _Q[Quantity.CYCLE_WH]] = st.cycle_wh[rows]
    q[:, _Q[Quantity.TEST_AH]] = st.total_ah[rows]
    q[:, _Q[Quantity.TEST_WH]] = st.total_wh[rows]
    q[:, _Q[Quantity.DV_DT]] = dv_dt
    q[:, _Q[Quantity.ABS_DV_DT]] = np.abs(dv_dt)
    q[:, _Q[Quantity.DTEMP_DT]] = dtemp_dt
    q[:, _Q[Quantity.CYCLE]] = st.cycle[rows]
    st.q_last[rows] = q

    # A non-finite reading trips at once (a temperature only where one is limited); a
    # reading beyond a limit trips once it has stayed beyond for the limit's delay.
    bound = st.bound[rows]
    signed = np.stack((v, -v, i, -i, temp, -temp), axis=1)
    temperature_limited = np.isfinite(bound[:, 4]) | np.isfinite(bound[:, 5])
    tripped = ~np.isfinite(v) | ~np.isfinite(i) | (temperature_limited & ~np.isfinite(temp))
    beyond = signed > bound
    since = st.beyond_since[rows]
    since = np.where(beyond, np.where(np.isnan(since), t[:, None], since), np.nan)
    st.beyond_since[rows] = since
    tripped |= (beyond & (t[:, None] - since >= st.delay[rows])).any(axis=1)
    if st.signal_limited:  # limits on device signals: a missing one is beyond them too
        hit, st.signal_since[rows] = signals_tripped(
            q[:, len(QUANTITY_COLUMN):], st.signal_bound[rows], st.signal_delay[rows],
            st.signal_since[rows], t)
        tripped |= hit
    group = st.conditions.met(rows, q)
    ended = (group >= 0) & ~tripped & ~paused

    batch = SampleRows(
        test_id=st.test_id[rows], seq=st.seq[rows], test_time_s=test_time,
        unix_time_s=t + (st.clock.unix(0.0)), step_time_s=step_time, voltage_v=v,
        current_a=i, power_w=p, temperature_c=temp, step_index=st.step_index[rows],
        plan_line=st.plan_line[rows], cycle=st.cycle[rows], ah=step_ah, wh=step_wh,
        aux={k[4:]: c for k, c in cols.items() if k.startswith("aux:")})
    st.writer.submit(batch)
    st.samples += len(rows)
    if st.observer is not None:
        st.observer(st.channel_no[rows], batch)

    if tripped.any():
        for row in rows[tripped]:
            await trip(st, st.runs[row], float(st.last_t[row]))
    if ended.any():
        for row, g in zip(rows[ended], group[ended], strict=True):
            run = st.runs[row]
            t_row = float(st.last_t[row])
            close_step(st, run, t_row, end_reason(run.cursor.step, int(g)))
            await advance(st, run, t_row, int(g))


async def fail_driver(st: RunState, driver: ChannelDriver, reason: str) -> None:
    """Fail every running test on ``driver``: it did not answer or answered nonsense."""
    t = st.clock.now()
    for run in st.runs:
        if run.request.channel.driver is driver and st.active[run.row]:
            close_step(st, run, t, reason)
            alarm(st, run, f"channel {run.request.channel.name}: {reason}", t)
            await finish(st, run, TestStatus.FAILED, reason, t)


async def handle_actions(st: RunState) -> None:
    """Apply the pause, resume and next-step requests made since the last tick."""
    actions, st.actions = st.actions, []
    t = st.clock.now()
    for run, action in actions:
        row, channel = run.row, run.request.channel
        if not st.active[row]:
            continue  # it ended meanwhile
        if action is Control.NEXT:
            st.paused[row] = run.paused = False
            st.waits.pop(row, None)
            t_row = float(st.last_t[row])  # the step ends with its last sample
            close_step(st, run, t_row, "next step by operator")
            await advance(st, run, t_row)
            continue
        if (action is Control.PAUSE) == bool(st.paused[row]):
            continue  # paused and resumed again (or the reverse) before this tick
        try:
            if action is Control.PAUSE:
                await call_with_timeout(channel.driver.output_off(channel.local),
                                        st.device_timeout_s, channel.driver_name,
                                        "output_off")
            else:
                await call_with_timeout(channel.driver.apply(channel.local,
                                                             run.steps[run.cursor.pc][0]),
                                        st.device_timeout_s, channel.driver_name, "apply")
        except DeviceError as err:
            reason = f"device error on {action.value}: {err}"
            close_step(st, run, float(st.last_t[row]), reason)
            alarm(st, run, f"channel {channel.name}: {reason}", t)
            await finish(st, run, TestStatus.FAILED, reason, t)
            continue
        st.paused[row] = action is Control.PAUSE
        st.prev_t[row] = st.prev_v[row] = st.prev_temp[row] = np.nan  # no rate
        # across the pause's edges


async def handle_stops(st: RunState) -> None:
    """Stop the tests asked to stop since the last tick, output off."""
    stops, st.stop = st.stop, {}
    t = st.clock.now()
    ends = []
    for run in st.runs:
        reason = stops.get(run.request.channel.number, stops.get(None))
        if reason is not None and st.active[run.row]:
            close_step(st, run, float(st.last_t[run.row]), reason)
            ends.append((run, reason))
    if ends:
        await finish_all(st, ends, TestStatus.STOPPED, t)

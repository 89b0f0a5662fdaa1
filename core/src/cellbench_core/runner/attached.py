"""The station's devices and chambers that running tests see: their signals read once a tick
(recorded as aux columns, compared by end conditions), chamber temperatures handed to the
channels as ambient, and chamber steps that wait for a stable chamber.

Per-channel Python where it is per channel: chamber steps are rare, and a tick reads each
device once whatever the number of channels it serves.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import cast

from cellbench_core.runner.state import RunState
from cellbench_core.runner.transitions import advance, close_step, fail_wait
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
    """Move on the channels whose chamber has been stable long enough; fail those whose
    chamber did not get stable in time (per-channel Python: chamber steps are rare)."""
    t = st.clock.now()
    states: dict[int, ChamberState | DeviceError] = {}
    for row, (since, began) in list(st.waits.items()):
        run = st.runs[row]
        if st.paused[row]:
            continue  # the wait stands still with the step
        chamber = run.request.chamber
        spec = run.cursor.step.chamber
        assert chamber is not None and spec is not None
        if id(chamber) not in states:
            try:
                states[id(chamber)] = await call_with_timeout(
                    chamber.read(), st.device_timeout_s, chamber.name, "read")
            except DeviceError as err:
                states[id(chamber)] = err
        state = states[id(chamber)]
        if isinstance(state, DeviceError):
            await fail_wait(st, run, f"chamber error: {state}", t)
            continue
        stable = abs(state.temperature_c - state.setpoint_c) <= spec.band_k
        if spec.humidity_pct is not None:
            humidity = state.humidity_pct if state.humidity_pct is not None else math.nan
            stable &= abs(humidity - spec.humidity_pct) <= (spec.band_pct or 0.0)
        since = (since if since is not None else t) if stable else None
        if since is not None and t - since >= spec.stable_s:
            del st.waits[row]
            close_step(st, run, t, "chamber stable")
            await advance(st, run, t, run.cursor.step.ends - 1)
        elif t - began >= spec.timeout_s:
            await fail_wait(st, run, f"the chamber was not stable within "
                                  f"{spec.timeout_s:g} s (line {run.cursor.step.line})", t)
        else:
            st.waits[row] = (since, began)


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
        elif isinstance(result, ChamberState):
            st.failing.discard(name)
            values = {"temperature": result.temperature_c}
            if result.humidity_pct is not None:
                values["humidity"] = result.humidity_pct
            set_ambient(st, channels, result.temperature_c)
        else:
            st.failing.discard(name)
            readings = cast(Mapping[str, Reading], result)
            values = {signal: reading.value for signal, reading in readings.items()}
        for signal, value in values.items():
            signals[f"{name}.{signal}"] = (value, channels)
    return signals


def fill_signals(st: RunState, rows: IntArray, q: FloatArray) -> None:
    """Put this tick's signal values into the columns of the rows whose steps end on them."""
    position = {int(row): p for p, row in enumerate(rows.tolist())}
    for name, users in st.signal_users.items():
        value = st.signals_now.get(name, math.nan)
        for row, column in users.items():
            p = position.get(row)
            if p is not None:
                q[p, column] = value


def set_ambient(st: RunState, channels: set[int], celsius: float) -> None:
    """Hand a chamber's temperature to the running channels it holds."""
    if not math.isfinite(celsius):
        return
    for number in channels:
        run = st.run_of.get(number)
        if run is not None and st.active[run.row]:
            ref = run.request.channel
            ref.driver.set_ambient(ref.local, celsius)

"""The channel-driver check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from cellbench_hal import (
    REST,
    ChannelDriver,
    ChannelInfo,
    Clock,
    NotSupported,
    OutOfRange,
    Profile,
    ProfileQuantity,
    SampleBatch,
    Step,
    StepMode,
)
from cellbench_hal.types import FloatArray, IntArray
from cellbench_sdk.testing._checker import (
    Call,
    Checker,
    clock_for,
    close_checked,
    closing_on_error,
    open_checked,
    raised,
    settle,
)

# --- channel drivers ----------------------------------------------------------------------------


def _show(step: Step) -> str:
    values = [f"{k}={v:g}" for k in ("current_a", "voltage_v", "power_w", "resistance_ohm")
              if (v := getattr(step, k)) is not None]
    return f"Step({', '.join([f'StepMode.{step.mode.name}', *values])})"


def _steps_within(info: ChannelInfo) -> list[Step]:
    """One step of every mode well inside ``info``'s ranges; the last one charges at CC."""
    i = info.current_max_a / 10
    v = (info.voltage_min_v + info.voltage_max_v) / 2
    v_abs = max(abs(info.voltage_min_v), abs(info.voltage_max_v))
    p = min(info.power_max_w, v_abs * info.current_max_a) / 10
    return [
        REST,
        Step(StepMode.CV, voltage_v=v, current_a=i),
        Step(StepMode.CCCV, current_a=i, voltage_v=v),
        Step(StepMode.CP, power_w=p),
        Step(StepMode.CP, power_w=-p),
        Step(StepMode.CR, resistance_ohm=10 * v_abs / info.current_max_a),
        Step(StepMode.PROFILE, profile=Profile(ProfileQuantity.CURRENT, (0.0, 1.0), (-i, i))),
        Step(StepMode.CC, current_a=-i),
        Step(StepMode.CC, current_a=i),
    ]


def _beyond_range(step: Step, info: ChannelInfo) -> Step | None:
    """``step`` with one value beyond ``info``'s ranges, or None if its mode has no such value."""
    if step.mode in (StepMode.CC, StepMode.CCCV):
        return replace(step, current_a=2 * info.current_max_a)
    if step.mode is StepMode.CV:
        return replace(step, voltage_v=2 * info.voltage_max_v - info.voltage_min_v)
    if step.mode is StepMode.CP and math.isfinite(info.power_max_w):
        return replace(step, power_w=2 * info.power_max_w)
    if step.profile is not None:
        beyond = (0.0, 2 * info.current_max_a)
        return replace(step, profile=Profile(ProfileQuantity.CURRENT, (0.0, 1.0), beyond))
    return None


def _range_problem(info: ChannelInfo) -> str:
    finite = math.isfinite(info.voltage_min_v) and math.isfinite(info.voltage_max_v)
    if not (info.name and isinstance(info.name, str)):
        return f"name {info.name!r}"
    if not (finite and info.voltage_min_v < info.voltage_max_v):
        return f"voltage range {info.voltage_min_v!r}..{info.voltage_max_v!r} V"
    if not (math.isfinite(info.current_max_a) and info.current_max_a > 0):
        return f"current_max_a {info.current_max_a!r}"
    if not info.power_max_w > 0:
        return f"power_max_w {info.power_max_w!r}"
    return ""


def _check_channels(check: Checker, channels: object) -> tuple[ChannelInfo, ...]:
    what = "channels after open()"
    if not (isinstance(channels, Sequence) and channels):
        raise check.fail(what, "a driver offers at least one channel, as a sequence of "
                         "ChannelInfo", repr(channels))
    for c, info in enumerate(channels):
        if not isinstance(info, ChannelInfo):
            raise check.fail(what, "every channel is described by a ChannelInfo",
                             f"channels[{c}] is {info!r}")
        problem = _range_problem(info)
        if problem:
            raise check.fail(what, "a channel has a non-empty name, finite voltages with "
                             "voltage_min_v < voltage_max_v, a finite positive current_max_a "
                             "and a positive power_max_w (inf when unlimited)",
                             f"channels[{c}] has {problem}")
    names = [info.name for info in channels]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise check.fail(what, "channel names are unique", f"{twice} appear more than once")
    return tuple(channels)


def _array(column: object) -> str:
    if isinstance(column, np.ndarray):
        return f"a {column.ndim}-D array of {column.dtype}"
    return f"a {type(column).__name__}"


def _check_batch(check: Checker, batch: object, now: float,
                 last: FloatArray) -> tuple[SampleBatch, IntArray]:
    """Check one ``measure()`` result; advance ``last`` (each channel's latest time) and return
    the batch and the row of each channel's latest sample in it."""
    what, n = "measure()", len(last)
    if not isinstance(batch, SampleBatch):
        raise check.fail(what, "measure() returns a SampleBatch", f"returned {batch!r}")
    columns: dict[str, object] = {
        "channel": batch.channel, "time_s": batch.time_s, "voltage_v": batch.voltage_v,
        "current_a": batch.current_a, "temperature_c": batch.temperature_c,
        **{f"aux[{key!r}]": value for key, value in batch.aux.items()},
    }
    lengths: dict[str, int] = {}
    for name, column in columns.items():
        dtype = np.int64 if name == "channel" else np.float64
        if not (isinstance(column, np.ndarray) and column.ndim == 1 and column.dtype == dtype):
            raise check.fail(what, f"every column is a 1-D numpy array; {name} holds "
                             f"{np.dtype(dtype)}", f"{name} is {_array(column)}")
        lengths[name] = len(column)
    if len(set(lengths.values())) != 1:
        raise check.fail(what, "every column has one entry per sample (equal lengths)",
                         ", ".join(f"{name}: {length}" for name, length in lengths.items()))
    channel, time_s = batch.channel, batch.time_s
    outside = channel[(channel < 0) | (channel >= n)]
    if outside.size:
        raise check.fail(what, f"channel holds the driver's channel indices 0..{n - 1}",
                         f"channel index {outside[0]}")
    missing = np.setdiff1d(np.arange(n), channel)
    if missing.size:
        raise check.fail(what, "every call returns at least the latest sample of every channel",
                         f"no sample of channel {', '.join(map(str, missing[:10]))}")
    if not np.isfinite(time_s).all():
        raise check.fail(what, "time_s is finite", f"time_s {time_s[~np.isfinite(time_s)][0]}")
    if (time_s > now).any():
        raise check.fail(what, "time_s is the station clock's time of each sample, never later "
                         "than the clock's now()",
                         f"time_s {time_s.max():g} s while the clock read {now:g} s")
    order = np.argsort(channel, kind="stable")
    by_channel, times = channel[order], time_s[order]
    back = np.flatnonzero((by_channel[1:] == by_channel[:-1]) & (times[1:] < times[:-1]))
    if back.size:
        k = back[0]
        raise check.fail(what, "the rows of one channel are in time order",
                         f"channel {by_channel[k]} goes back from {times[k]:g} s to "
                         f"{times[k + 1]:g} s")
    firsts = np.flatnonzero(np.r_[True, by_channel[1:] != by_channel[:-1]])
    lasts = np.r_[firsts[1:], len(times)] - 1
    earlier = np.flatnonzero(times[firsts] < last)
    if earlier.size:
        c = earlier[0]
        raise check.fail(what, "each channel's samples continue in time order from one "
                         "measure() to the next",
                         f"channel {c} returned {times[firsts][c]:g} s after {last[c]:g} s")
    last[:] = times[lasts]
    latest: IntArray = order[lasts]
    return batch, latest


async def check_channel_driver(
    driver: ChannelDriver,
    clock: Clock | None = None,
    *,
    settle_s: float = 1.0,
    timeout_s: float = 5.0,
    off_current_fraction: float = 1e-3,
) -> frozenset[StepMode]:
    """Check ``driver`` against the channel-driver contract; return the step modes it accepts.

    Opens and closes the driver. ``clock`` defaults to a virtual clock for drivers with
    ``virtual_time_ok`` and to the real one otherwise; ``settle_s`` of clock time pass between
    setpoints and measurements; every call must finish within ``timeout_s`` (wall time). After
    ``output_off`` each channel's |current| must be at most ``off_current_fraction`` of its range.
    Modes a driver lacks must be refused with :class:`~cellbench_hal.NotSupported`.
    """
    check = Checker(driver, timeout_s)
    clock = clock_for(driver, clock)
    not_open: dict[str, Call] = {
        "measure()": driver.measure,
        "apply(0, REST)": lambda: driver.apply(0, REST),
        "output_off(0)": lambda: driver.output_off(0),
    }
    await open_checked(check, clock, not_open)
    accepted = await closing_on_error(
        driver, _channel_body(check, driver, clock, settle_s, off_current_fraction))
    await close_checked(check, not_open)
    return accepted


async def _channel_body(check: Checker, driver: ChannelDriver, clock: Clock, settle_s: float,
                        off_current_fraction: float) -> frozenset[StepMode]:
    channels = _check_channels(check, driver.channels)
    last = np.full(len(channels), -np.inf)

    async def measure() -> tuple[SampleBatch, IntArray]:
        batch: object = await check.ok("measure()", driver.measure())
        return _check_batch(check, batch, clock.now(), last)

    await measure()
    steps = [_steps_within(info) for info in channels]
    accepted: list[list[Step]] = [[] for _ in channels]
    for round_ in range(len(steps[0])):
        for c, info in enumerate(channels):
            step = steps[c][round_]
            what = f"apply({c}, {_show(step)})"
            try:
                await check.run(what, driver.apply(c, step))
            except NotSupported:
                continue
            except Exception as err:
                raise check.fail(what, f"a step within the channel's ranges ({_range(info)}) "
                                 "is accepted, or refused with NotSupported if the hardware "
                                 "lacks its mode", raised(err)) from err
            accepted[c].append(step)
        await settle(clock, settle_s)
        await measure()
    modes = frozenset(step.mode for steps_of in accepted for step in steps_of)
    if not modes - {StepMode.REST}:
        raise check.fail("apply() of every step mode", "a channel accepts at least one mode "
                         "that drives current (cc, cv, cccv, cp or cr)",
                         f"accepted only {', '.join(sorted(modes)) or 'nothing'}")

    for c, info in enumerate(channels):
        beyond = (_beyond_range(step, info) for step in accepted[c])
        for step in dict.fromkeys(b for b in beyond if b is not None):
            await check.refused(f"apply({c}, {_show(step)})", driver.apply(c, step), OutOfRange,
                                f"a setpoint beyond the channel's ranges ({_range(info)}) is "
                                "refused with OutOfRange")
    probe = accepted[0][-1] if accepted[0] else REST
    for bad in (len(channels), -1):
        rule = (f"a channel index outside 0..{len(channels) - 1} is refused with OutOfRange "
                "(negative indices do not count from the end)")
        await check.refused(f"apply({bad}, {_show(probe)})", driver.apply(bad, probe),
                            OutOfRange, rule)
        await check.refused(f"output_off({bad})", driver.output_off(bad), OutOfRange, rule)

    for c in range(len(channels)):
        await check.ok(f"output_off({c})", driver.output_off(c))
    await settle(clock, settle_s)
    batch, latest = await measure()
    for c, info in enumerate(channels):
        current = float(batch.current_a[latest[c]])
        limit = off_current_fraction * info.current_max_a
        if not abs(current) <= limit:
            raise check.fail(f"measure() {settle_s:g} s after output_off({c})",
                             f"the output is off: |current| <= {limit:g} A "
                             f"({off_current_fraction:g} of the channel's range)",
                             f"channel {c} measured {current:g} A")
    return modes


def _range(info: ChannelInfo) -> str:
    power = f", ±{info.power_max_w:g} W" if math.isfinite(info.power_max_w) else ""
    return f"{info.voltage_min_v:g}..{info.voltage_max_v:g} V, ±{info.current_max_a:g} A{power}"


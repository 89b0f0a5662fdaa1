"""Contract checks for plugin authors, run in their own test suites without hardware.

Each ``check_*`` function drives a device (or a plugin module) through the contract the core
relies on and raises :class:`AssertionError` on the first deviation, with a message that states
the rule and what the device did::

    from cellbench_sdk.testing import check_device, check_plugin

    def test_plugin() -> None:
        check_plugin(my_plugin_module)

    def test_driver() -> None:
        check_device(MySimulatedCycler(MySettings()))

Drivers that talk to an instrument are checked against a simulator of it (``await
check_channel_driver(driver, RealClock(), settle_s=0.01)`` inside the test's event loop), and
their exact bytes with :class:`ScriptedPeer`.
"""

from __future__ import annotations

import asyncio
import difflib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Any, Final, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from cellbench_core import hookspecs
from cellbench_core.descriptors import Descriptor, Kind
from cellbench_core.plugins import PluginManager
from cellbench_hal import (
    REST,
    ChamberState,
    ChannelDriver,
    ChannelInfo,
    ClimateChamber,
    Clock,
    Device,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Profile,
    ProfileQuantity,
    Reading,
    RealClock,
    SampleBatch,
    SignalInfo,
    Step,
    StepMode,
    VirtualClock,
)
from cellbench_hal.types import FloatArray, IntArray
from cellbench_sdk.peer import HANG_UP, HangUp, ScriptedPeer

__all__ = [
    "HANG_UP",
    "HangUp",
    "ScriptedPeer",
    "check_channel_driver",
    "check_climate_chamber",
    "check_device",
    "check_failed_open",
    "check_osi_device",
    "check_plugin",
]

T = TypeVar("T")
Call = Callable[[], Awaitable[object]]

_NOT_OPEN = "calls on a device that is not open (before open() or after close()) raise " \
            "DeviceConnectionError"
_UNKNOWN_SIGNAL = "cellbench-testing-no-such-signal"
_CONTRACTS: Final[dict[Kind, type]] = {
    Kind.CHANNEL_DRIVER: ChannelDriver,
    Kind.OSI_DEVICE: OsiDevice,
    Kind.CLIMATE_CHAMBER: ClimateChamber,
}


class _Violation(AssertionError):
    """A check failed (kept apart from AssertionErrors that the device under test raises)."""


def _violation(subject: str, what: str, rule: str, did: str) -> _Violation:
    return _Violation(f"{subject}: {what}\n  contract: {rule}\n  got:      {did}")


def _raised(err: BaseException) -> str:
    return f"raised {type(err).__name__}: {err}"


class _Checker:
    """Calls one device within a timeout and turns deviations into :class:`AssertionError`."""

    def __init__(self, device: Device, timeout_s: float) -> None:
        self.device = device
        self.subject = f"{type(device).__name__} {getattr(device, 'name', '?')!r}"
        self.timeout_s = timeout_s

    def fail(self, what: str, rule: str, did: str) -> _Violation:
        return _violation(self.subject, what, rule, did)

    async def run(self, what: str, call: Awaitable[T]) -> T:
        """Await ``call``; a call that neither returns nor raises in time is a violation."""
        try:
            async with asyncio.timeout(self.timeout_s) as scope:
                return await call
        except TimeoutError:
            if scope.expired():
                raise self.fail(what, "every call returns or raises within its timeout",
                                f"no answer within {self.timeout_s:g} s") from None
            raise

    async def ok(self, what: str, call: Awaitable[T], rule: str = "") -> T:
        """Await a call that the contract says succeeds."""
        try:
            return await self.run(what, call)
        except _Violation:
            raise
        except Exception as err:
            raise self.fail(what, rule or "this call succeeds on a working device",
                            _raised(err)) from err

    async def refused(self, what: str, call: Awaitable[object],
                      error: type[DeviceError] | tuple[type[DeviceError], ...], rule: str) -> None:
        """Await a call that the contract says raises ``error``."""
        try:
            await self.run(what, call)
        except _Violation:
            raise
        except error:
            return
        except Exception as err:
            raise self.fail(what, rule, _raised(err)) from err
        raise self.fail(what, rule, "returned without an error")


def _clock_for(device: Device, clock: Clock | None) -> Clock:
    if clock is None:
        return VirtualClock() if device.virtual_time_ok else RealClock()
    if clock.virtual and not device.virtual_time_ok:
        raise ValueError(f"{type(device).__name__} is real hardware (virtual_time_ok is False): "
                         "check it on a RealClock")
    return clock


async def _open(check: _Checker, clock: Clock, not_open: Mapping[str, Call]) -> None:
    """Close before open, calls before open, then open."""
    await check.ok("close() before open()", check.device.close(),
                   "close() is idempotent and safe on a device never opened (or whose open failed)")
    for what, call in not_open.items():
        await check.refused(f"{what} before open()", call(), DeviceConnectionError, _NOT_OPEN)
    await check.ok("open()", check.device.open(clock))


async def _close(check: _Checker, not_open: Mapping[str, Call]) -> None:
    """Close twice, then calls after close."""
    await check.ok("close()", check.device.close())
    await check.ok("a second close()", check.device.close(), "close() is idempotent")
    for what, call in not_open.items():
        await check.refused(f"{what} after close()", call(), DeviceConnectionError, _NOT_OPEN)


async def _closing_on_error(device: Device, body: Awaitable[T]) -> T:
    """Await ``body``; if it fails, close the device (best effort) before re-raising."""
    try:
        return await body
    except BaseException:
        with suppress(Exception):
            await device.close()
        raise


async def _settle(clock: Clock, seconds: float) -> None:
    await clock.sleep_until(clock.now() + seconds)


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


def _check_channels(check: _Checker, channels: object) -> tuple[ChannelInfo, ...]:
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


def _check_batch(check: _Checker, batch: object, now: float,
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
    check = _Checker(driver, timeout_s)
    clock = _clock_for(driver, clock)
    not_open: dict[str, Call] = {
        "measure()": driver.measure,
        "apply(0, REST)": lambda: driver.apply(0, REST),
        "output_off(0)": lambda: driver.output_off(0),
    }
    await _open(check, clock, not_open)
    accepted = await _closing_on_error(
        driver, _channel_body(check, driver, clock, settle_s, off_current_fraction))
    await _close(check, not_open)
    return accepted


async def _channel_body(check: _Checker, driver: ChannelDriver, clock: Clock, settle_s: float,
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
                                 "lacks its mode", _raised(err)) from err
            accepted[c].append(step)
        await _settle(clock, settle_s)
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
    await _settle(clock, settle_s)
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


# --- OSI devices --------------------------------------------------------------------------------


def _check_signals(check: _Checker, signals: object) -> tuple[SignalInfo, ...]:
    what = "signals after open()"
    if not (isinstance(signals, Sequence) and signals
            and all(isinstance(info, SignalInfo) for info in signals)):
        raise check.fail(what, "a device offers at least one signal, as a sequence of "
                         "SignalInfo", repr(signals))
    names = [info.name for info in signals]
    if not all(name and isinstance(name, str) for name in names) or len(set(names)) != len(names):
        raise check.fail(what, "signal names are non-empty and unique", f"names {names}")
    return tuple(signals)


def _check_readings(check: _Checker, readings: object, signals: Sequence[SignalInfo],
                    now: float, last: dict[str, float]) -> Mapping[str, Reading]:
    what, names = "read()", {info.name for info in signals}
    if not (isinstance(readings, Mapping)
            and all(isinstance(r, Reading) for r in readings.values())):
        raise check.fail(what, "read() returns a mapping of signal name to Reading",
                         repr(readings))
    unknown = sorted(set(readings) - names)
    missing = [info.name for info in signals if not info.writable and info.name not in readings]
    if unknown or missing:
        raise check.fail(what, "read() returns every read-only signal (writable ones may be "
                         "left out) and no other name",
                         f"unknown {unknown}, missing {missing}")
    for name, reading in readings.items():
        value, t = reading.value, reading.time_s
        if isinstance(value, bool) or not isinstance(value, float | int):
            raise check.fail(what, "a reading's value is a float (NaN for a failed sensor)",
                             f"{name} = {value!r}")
        if not (isinstance(t, float | int) and math.isfinite(t) and last.get(name, -math.inf)
                <= t <= now):
            raise check.fail(what, "a reading's time_s is the station clock's time of the "
                             "measurement: not later than now(), not earlier than the "
                             "previous reading of that signal",
                             f"{name} at {t!r} s (clock now {now:g} s, previous "
                             f"{last.get(name, -math.inf):g} s)")
        last[name] = float(t)
    return readings


async def check_osi_device(
    device: OsiDevice,
    clock: Clock | None = None,
    *,
    values: Mapping[str, float] | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Check ``device`` against the OSI-device contract.

    Every writable signal is written with ``values[name]``, by default with the value it reads.
    Read-only signals must refuse writes with :class:`~cellbench_hal.NotSupported`; unknown
    signals and non-finite values are refused with :class:`~cellbench_hal.OutOfRange`.
    """
    check = _Checker(device, timeout_s)
    clock = _clock_for(device, clock)
    await _open(check, clock, {"read()": device.read})
    writable = await _closing_on_error(device, _osi_body(check, device, clock, values or {}))
    after: dict[str, Call] = {"read()": device.read}
    for name, value in writable.items():
        after[f"write({name!r}, {value:g})"] = partial(device.write, name, value)
    await _close(check, after)


async def _osi_body(check: _Checker, device: OsiDevice, clock: Clock,
                    values: Mapping[str, float]) -> dict[str, float]:
    """The open-device part of :func:`check_osi_device`; returns the value written per signal."""
    signals = _check_signals(check, device.signals)
    wrong = sorted(set(values) - {info.name for info in signals if info.writable})
    if wrong:
        raise ValueError(f"values names {wrong}, which are not writable signals of "
                         f"{check.subject}")
    last: dict[str, float] = {}

    async def read() -> Mapping[str, Reading]:
        readings: object = await check.ok("read()", device.read())
        return _check_readings(check, readings, signals, clock.now(), last)

    readings = await read()
    written: dict[str, float] = {}
    for info in signals:
        if info.name in values:
            value = values[info.name]
        elif info.name in readings:
            value = readings[info.name].value
        else:  # only writable signals may be missing from read()
            raise ValueError(f"signal {info.name!r} of {check.subject} is writable but not "
                             f"read: pass values={{{info.name!r}: ...}}")
        what = f"write({info.name!r}, {value:g})"
        if not info.writable:
            await check.refused(what, device.write(info.name, value), NotSupported,
                                "writing a read-only signal is refused with NotSupported")
            continue
        await check.ok(what, device.write(info.name, value))
        await check.refused(f"write({info.name!r}, nan)", device.write(info.name, math.nan),
                            OutOfRange, "a non-finite value is refused with OutOfRange")
        written[info.name] = value
    await check.refused(f"write({_UNKNOWN_SIGNAL!r}, 0)", device.write(_UNKNOWN_SIGNAL, 0.0),
                        OutOfRange, "writing an unknown signal is refused with OutOfRange")
    await read()
    return written


# --- climate chambers ---------------------------------------------------------------------------


def _check_state(check: _Checker, state: object, now: float, last: list[float],
                 has_humidity: bool) -> ChamberState:
    what = "read()"
    if not isinstance(state, ChamberState):
        raise check.fail(what, "read() returns a ChamberState", repr(state))
    if not (math.isfinite(state.time_s) and last[0] <= state.time_s <= now):
        raise check.fail(what, "time_s is the station clock's time of the reading: not later "
                         "than now(), not earlier than the previous reading",
                         f"time_s {state.time_s!r} s (clock now {now:g} s, previous "
                         f"{last[0]:g} s)")
    last[0] = state.time_s
    if not isinstance(state.running, bool):
        raise check.fail(what, "running is a bool", repr(state.running))
    humidity = (state.humidity_pct, state.setpoint_humidity_pct)
    if has_humidity != all(h is not None for h in humidity) or (
            not has_humidity and any(h is not None for h in humidity)):
        rule = ("humidity_pct and setpoint_humidity_pct are given exactly when the chamber "
                "has_humidity")
        raise check.fail(what, rule, f"has_humidity {has_humidity}, humidity {humidity}")
    return state


async def check_climate_chamber(
    chamber: ClimateChamber,
    clock: Clock | None = None,
    *,
    setpoint_c: float = 25.0,
    humidity_pct: float = 50.0,
    timeout_s: float = 5.0,
) -> None:
    """Check ``chamber`` against the climate-chamber contract, using ``setpoint_c`` (and
    ``humidity_pct`` if it has humidity) as setpoints it accepts.

    Setpoints read back as set; ``start``/``stop`` show in ``running``; non-finite and impossible
    setpoints are refused with :class:`~cellbench_hal.OutOfRange`; a chamber without humidity
    refuses humidity setpoints with :class:`~cellbench_hal.NotSupported`.
    """
    check = _Checker(chamber, timeout_s)
    clock = _clock_for(chamber, clock)
    not_open: dict[str, Call] = {
        "read()": chamber.read,
        f"set_temperature({setpoint_c:g})": lambda: chamber.set_temperature(setpoint_c),
        "start()": chamber.start,
    }
    await _open(check, clock, not_open)
    await _closing_on_error(chamber, _chamber_body(check, chamber, clock, setpoint_c,
                                                   humidity_pct))
    await _close(check, not_open)


async def _chamber_body(check: _Checker, chamber: ClimateChamber, clock: Clock,
                        setpoint_c: float, humidity_pct: float) -> None:
    last = [-math.inf]

    async def read() -> ChamberState:
        state: object = await check.ok("read()", chamber.read())
        return _check_state(check, state, clock.now(), last, chamber.has_humidity)

    await read()
    await check.ok(f"set_temperature({setpoint_c:g})", chamber.set_temperature(setpoint_c))
    state = await read()
    if not math.isclose(state.setpoint_c, setpoint_c, abs_tol=0.01):
        raise check.fail("read() after set_temperature()", "setpoint_c reads back as set",
                         f"setpoint_c {state.setpoint_c!r} after set_temperature({setpoint_c:g})")
    for bad in (math.nan, 1000.0):
        await check.refused(f"set_temperature({bad:g})", chamber.set_temperature(bad),
                            OutOfRange, "a non-finite or impossible setpoint is refused with "
                            "OutOfRange")
    for call, running in ((chamber.start, True), (chamber.stop, False)):
        what = f"{call.__name__}()"
        await check.ok(what, call())
        state = await read()
        if state.running is not running:
            raise check.fail(f"read() after {what}", f"running is {running} after {what}",
                             f"running is {state.running}")
    if not chamber.has_humidity:
        await check.refused(f"set_humidity({humidity_pct:g})", chamber.set_humidity(humidity_pct),
                            NotSupported, "a chamber without humidity control (has_humidity "
                            "False) refuses humidity setpoints with NotSupported")
        return
    await check.ok(f"set_humidity({humidity_pct:g})", chamber.set_humidity(humidity_pct))
    state = await read()
    if not (state.setpoint_humidity_pct is not None
            and math.isclose(state.setpoint_humidity_pct, humidity_pct, abs_tol=0.01)):
        raise check.fail("read() after set_humidity()", "setpoint_humidity_pct reads back as set",
                         f"setpoint_humidity_pct {state.setpoint_humidity_pct!r} after "
                         f"set_humidity({humidity_pct:g})")
    for bad in (math.nan, 150.0):
        await check.refused(f"set_humidity({bad:g})", chamber.set_humidity(bad), OutOfRange,
                            "a non-finite humidity or one outside 0..100 % is refused with "
                            "OutOfRange")


# --- any device ---------------------------------------------------------------------------------


async def check_failed_open(device: Device, clock: Clock | None = None, *,
                            timeout_s: float = 5.0) -> None:
    """Check that ``device``, set up to reach nothing (a closed port, a missing library), fails
    to open with :class:`~cellbench_hal.DeviceConnectionError` (or
    :class:`~cellbench_hal.DeviceTimeout`) and then closes cleanly, twice."""
    check = _Checker(device, timeout_s)
    await check.refused("open() of an unreachable device", device.open(_clock_for(device, clock)),
                        (DeviceConnectionError, DeviceTimeout),
                        "open() of a device it cannot reach raises DeviceConnectionError (or "
                        "DeviceTimeout), so the station reports it and stays safe")
    await check.ok("close() after a failed open()", device.close(),
                   "close() is safe after a failed open()")
    await check.ok("a second close()", device.close(), "close() is idempotent")


def check_device(device: Device, clock: Clock | None = None) -> None:
    """Run the check of ``device``'s contract (channel driver, OSI device or climate chamber) in
    a new event loop, for synchronous tests of self-contained devices such as simulators."""
    if isinstance(device, ChannelDriver):
        asyncio.run(check_channel_driver(device, clock))
    elif isinstance(device, OsiDevice):
        asyncio.run(check_osi_device(device, clock))
    elif isinstance(device, ClimateChamber):
        asyncio.run(check_climate_chamber(device, clock))
    else:
        raise TypeError(f"{type(device).__name__} implements none of ChannelDriver, OsiDevice "
                        "and ClimateChamber")


# --- plugins ------------------------------------------------------------------------------------


def check_plugin(
    plugin: object,
    settings: Mapping[tuple[Kind, str], Mapping[str, Any]] | None = None,
) -> list[Descriptor]:
    """Check a plugin (the module its entry point names) as a station would load it; return its
    descriptors.

    Every hook implementation must match a hookspec, and at least one must exist; every
    descriptor's factory must import, its settings model must build from its defaults (or from
    ``settings[(kind, name)]``), and a device's factory must build a device of its kind's
    contract from those settings, without touching hardware (devices connect in ``open``).
    """
    name = getattr(plugin, "__name__", type(plugin).__name__)
    manager = PluginManager()
    specs = sorted(n for n in dir(hookspecs)
                   if manager.hooks.parse_hookspec_opts(hookspecs, n) is not None)
    impls = [n for n in dir(plugin) if manager.hooks.parse_hookimpl_opts(plugin, n) is not None]
    subject = f"plugin {name}"
    if not impls:
        raise _violation(subject, "its hook implementations", "a plugin implements at least one "
                         "hook, marked with @cellbench_sdk.hookimpl", "none found")
    for impl in impls:
        if impl not in specs:
            close = difflib.get_close_matches(impl, specs, n=1)
            raise _violation(subject, f"hook {impl}", "every hook implementation matches a "
                             f"hook of cellbench ({', '.join(specs)})",
                             f"no hook is called {impl}"
                             + (f"; did you mean {close[0]}?" if close else ""))
    reason = manager.register(name, plugin)
    if reason:
        raise _violation(subject, "registration", "a hook takes only arguments its hookspec "
                         "names; registration hooks return Descriptors of their kind, with "
                         "names unique per kind", reason)
    descriptors = manager.registry.all()
    unknown = set(settings or {}) - {(d.kind, d.name) for d in descriptors}
    if unknown:
        names = ", ".join(f"{kind} {name!r}" for kind, name in sorted(unknown))
        raise ValueError(f"settings names {names}, which {subject} does not offer")
    for descriptor in descriptors:
        _check_descriptor(descriptor, (settings or {}).get((descriptor.kind, descriptor.name), {}))
    return descriptors


def _check_descriptor(d: Descriptor, settings: Mapping[str, Any]) -> None:
    subject = f"{d.kind} {d.name!r} of plugin {d.plugin}"
    if not d.description.strip():
        raise _violation(subject, "description", "a descriptor has a one-line description for "
                         "`cellbench plugins`", repr(d.description))
    try:
        factory = d.load()
    except Exception as err:
        raise _violation(subject, f"factory {d.factory!r}", "the factory 'module:attr' imports",
                         _raised(err)) from err
    if not callable(factory):
        raise _violation(subject, f"factory {d.factory!r}", "the factory is callable",
                         repr(factory))
    if not (isinstance(d.settings, type) and issubclass(d.settings, BaseModel)):
        raise _violation(subject, "settings", "settings is a pydantic model class",
                         repr(d.settings))
    given = f"settings {dict(settings)}" if settings else "its defaults"
    try:
        model = d.settings.model_validate(dict(settings))
    except ValidationError as err:
        raise _violation(subject, f"settings model {d.settings.__name__}",
                         "the settings model builds from its defaults (give check_plugin "
                         "settings= for a model with required fields)",
                         f"{given}: {err}") from err
    contract = _CONTRACTS.get(d.kind)
    if contract is None:
        return
    try:
        built: object = factory(model)
    except Exception as err:
        raise _violation(subject, f"factory {d.factory!r} with {given}", "the factory builds the "
                         "device from its settings without touching hardware (a device "
                         "connects in open())", _raised(err)) from err
    if not isinstance(built, contract):
        raise _violation(subject, f"factory {d.factory!r}",
                         f"the factory of a {d.kind} returns a {contract.__name__}",
                         f"returned {type(built).__name__}")

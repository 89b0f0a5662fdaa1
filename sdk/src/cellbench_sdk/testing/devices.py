"""The OSI-device, climate-chamber and failed-open checks, and :func:`check_device`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from functools import partial

from cellbench_hal import (
    ChamberState,
    ChannelDriver,
    ClimateChamber,
    Clock,
    Device,
    DeviceConnectionError,
    DeviceTimeout,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
)
from cellbench_sdk.testing._checker import (
    Call,
    Checker,
    clock_for,
    close_checked,
    closing_on_error,
    open_checked,
    raised,
)
from cellbench_sdk.testing.channel import check_channel_driver

_UNKNOWN_SIGNAL = "cellbench-testing-no-such-signal"

# --- OSI devices --------------------------------------------------------------------------------


def _check_signals(check: Checker, signals: object) -> tuple[SignalInfo, ...]:
    what = "signals after open()"
    if not (isinstance(signals, Sequence) and signals
            and all(isinstance(info, SignalInfo) for info in signals)):
        raise check.fail(what, "a device offers at least one signal, as a sequence of "
                         "SignalInfo", repr(signals))
    names = [info.name for info in signals]
    if not all(name and isinstance(name, str) for name in names) or len(set(names)) != len(names):
        raise check.fail(what, "signal names are non-empty and unique", f"names {names}")
    return tuple(signals)


def _check_readings(check: Checker, readings: object, signals: Sequence[SignalInfo],
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
    signals, non-finite values and values beyond a signal's declared range (its ``minimum``
    and ``maximum``) are refused with :class:`~cellbench_hal.OutOfRange`.
    """
    check = Checker(device, timeout_s)
    clock = clock_for(device, clock)
    await open_checked(check, clock, {"read()": device.read})
    writable = await closing_on_error(device, _osi_body(check, device, clock, values or {}))
    after: dict[str, Call] = {"read()": device.read}
    for name, value in writable.items():
        after[f"write({name!r}, {value:g})"] = partial(device.write, name, value)
    await close_checked(check, after)


async def _osi_body(check: Checker, device: OsiDevice, clock: Clock,
                    values: Mapping[str, float]) -> dict[str, float]:
    """The open-device part of :func:`check_osi_device`; returns the value written per signal."""
    signals = _check_signals(check, device.signals)
    info: object = device.info
    if not (isinstance(info, Mapping) and all(
            isinstance(key, str) and key and isinstance(value, str)
            for key, value in info.items())):
        raise check.fail("info after open()", "info maps non-empty names to text (empty when "
                         "the device says nothing about itself)", repr(info))
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
        for bound, away in ((info.maximum, 1.0), (info.minimum, -1.0)):
            if bound is not None:  # just beyond the range the signal declares
                beyond = bound + away * max(abs(bound), 1.0)
                await check.refused(f"write({info.name!r}, {beyond:g})",
                                    device.write(info.name, beyond), OutOfRange,
                                    "a value beyond the signal's declared range is refused "
                                    "with OutOfRange")
        written[info.name] = value
    await check.refused(f"write({_UNKNOWN_SIGNAL!r}, 0)", device.write(_UNKNOWN_SIGNAL, 0.0),
                        OutOfRange, "writing an unknown signal is refused with OutOfRange")
    await read()
    return written


# --- climate chambers ---------------------------------------------------------------------------


def _check_state(check: Checker, state: object, now: float, last: list[float],
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
    setpoints are refused with :class:`~cellbench_hal.OutOfRange`; ``ramp_temperature`` ramps
    (refusing impossible targets the same way) or raises :class:`~cellbench_hal.NotSupported`;
    a chamber without humidity refuses humidity setpoints with NotSupported.
    """
    check = Checker(chamber, timeout_s)
    clock = clock_for(chamber, clock)
    not_open: dict[str, Call] = {
        "read()": chamber.read,
        f"set_temperature({setpoint_c:g})": lambda: chamber.set_temperature(setpoint_c),
        "start()": chamber.start,
    }
    await open_checked(check, clock, not_open)
    await closing_on_error(chamber, _chamber_body(check, chamber, clock, setpoint_c,
                                                   humidity_pct))
    await close_checked(check, not_open)


async def _chamber_body(check: Checker, chamber: ClimateChamber, clock: Clock,
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
    ramp = f"ramp_temperature({setpoint_c:g}, 1 K/min)"
    try:
        await check.run(ramp, chamber.ramp_temperature(setpoint_c, 1 / 60))
    except NotSupported:
        pass  # the controller cannot ramp: the station ramps it with moving setpoints
    except Exception as err:
        raise check.fail(ramp, "ramp_temperature ramps, or refuses with NotSupported when the "
                               "controller cannot", raised(err)) from err
    else:
        await check.refused("ramp_temperature(1000, 1 K/min)",
                            chamber.ramp_temperature(1000.0, 1 / 60), OutOfRange,
                            "an impossible ramp target is refused with OutOfRange")
        await check.ok(f"set_temperature({setpoint_c:g})", chamber.set_temperature(setpoint_c))
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
    check = Checker(device, timeout_s)
    await check.refused("open() of an unreachable device", device.open(clock_for(device, clock)),
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


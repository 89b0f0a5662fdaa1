"""Libraries that do not fit the header, and libraries that return garbage: clean typed errors
naming what is wrong, in both isolations, and nothing left running."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cellbench_native.library import COMMON_FUNCTIONS, VARIANT_FUNCTIONS
from cellbench_sdk import (
    BadReply,
    DeviceConnectionError,
    NotSupported,
    OutOfRange,
    RealClock,
    Step,
    StepMode,
)
from cellbench_sdk.driver_header import function_names

from .conftest import Faults, Libraries, Make

ISOLATIONS = ["process", "in-process"]
#: One call of an open device that the garbage shows in.
Call = Callable[[Any], Awaitable[None]]


def test_the_functions_checked_are_those_the_header_declares() -> None:
    assert (COMMON_FUNCTIONS + VARIANT_FUNCTIONS["osi"] + VARIANT_FUNCTIONS["bank"]
            == function_names())


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_missing_symbol_is_named_with_the_header_version(
        libraries: Libraries, make: Make, isolation: str) -> None:
    async def run() -> None:
        device = make.osi(libraries.without_write, isolation=isolation, config="/nonexistent")
        with pytest.raises(DeviceConnectionError, match=r"libnowrite.so lacks cb_write, which "
                           r"cellbench_driver.h version 1 declares for an OSI device"):
            await device.open(RealClock())
        await device.close()
        # A channel bank needs no cb_write: the same library opens as one.
        bank = make.bank(libraries.without_write, isolation=isolation, config="/nonexistent")
        await bank.open(RealClock())
        assert [c.name for c in bank.channels] == ["a", "b"]
        await bank.close()

    asyncio.run(run())


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_library_of_another_header_version_is_refused(
        libraries: Libraries, make: Make, isolation: str) -> None:
    async def run() -> None:
        device = make.bank(libraries.version_99, isolation=isolation)
        with pytest.raises(DeviceConnectionError, match=r"was built for cellbench_driver.h "
                           r"version 99; this cellbench has version 1"):
            await device.open(RealClock())
        await device.close()

    asyncio.run(run())


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_what_is_no_library_is_refused(tmp_path: Path, make: Make, isolation: str) -> None:
    text = tmp_path / "libnotes.so"
    text.write_text("not a library\n")

    async def run() -> None:
        device = make.osi(text, isolation=isolation)
        with pytest.raises(DeviceConnectionError, match=r"cannot load .*libnotes.so"):
            await device.open(RealClock())
        await device.close()

    asyncio.run(run())


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_device_the_library_cannot_open(
        libraries: Libraries, faults: Faults, make: Make, isolation: str) -> None:
    async def run() -> None:
        faults.set("fail", "cb_open")
        device = make.osi(libraries.faulty, isolation=isolation, config=faults.config)
        with pytest.raises(DeviceConnectionError, match=r"cb_open\('.*faulty'\) failed: no "
                           r"instrument answers at .*faulty"):
            await device.open(RealClock())
        await device.close()

    asyncio.run(run())


#: Garbage found while opening: (variant, kind, the error's message).
AT_OPEN = [
    ("osi", "zero-signals", r"cb_signal_count returned 0; a device has 1\.\.100000"),
    ("osi", "name", r"the name of signal 1 is not UTF-8: b'sw\\xff\\xfe'"),
    ("osi", "unterminated", r"the name of signal 1 fills all 64 bytes without the "
                            r"terminating NUL"),
    ("osi", "duplicate", r"signal names appear more than once: \['v'\]"),
    ("osi", "info", r"cb_describe_device gave the line 'no equals sign'; each line is a new "
                    r"name=value"),
    ("bank", "ranges", r"cb_describe_channel\(device, 0\) gave channel 'a' the voltage range "
                       r"0.0..nan V"),
    ("bank", "name", r"the name of channel 1 is not UTF-8: b'b\\xc3'"),
]


def _isolations(cases: list[tuple[Any, ...]], hosted: set[str]) -> list[Any]:
    """Every case in-process, and those of the kinds ``hosted`` in a host process too: the
    checks are the same code in both, the host only carries their errors over."""
    return [pytest.param("in-process", *case, id=f"in-process-{case[0]}-{case[1]}")
            for case in cases] + [
        pytest.param("process", *case, id=f"process-{case[0]}-{case[1]}")
        for case in cases if case[1] in hosted]


@pytest.mark.parametrize(("isolation", "variant", "kind", "message"),
                         _isolations(AT_OPEN, {"name", "ranges"}))
def test_garbage_descriptions_fail_the_open(
        libraries: Libraries, faults: Faults, make: Make, isolation: str, variant: str, kind: str,
        message: str) -> None:
    async def run() -> None:
        faults.set("garbage", kind)
        build = make.osi if variant == "osi" else make.bank
        device = build(libraries.faulty, isolation=isolation, config=faults.config)
        with pytest.raises(BadReply, match=message):
            await device.open(RealClock())
        await device.close()
        assert faults.calls()[-1][1] == "cb_close", "the library's device was closed"

    asyncio.run(run())


async def _osi_read(device: Any) -> None:
    await device.read()


async def _osi_write(device: Any) -> None:
    await device.write("switch", 1.0)


async def _measure(device: Any) -> None:
    await device.measure()


#: Garbage in calls of an open device: (variant, kind, call, the error's message).
IN_CALLS = [
    ("osi", "count", _osi_read, r"cb_read returned 5 values; the device has 2 signals"),
    ("osi", "inf", _osi_read, r"cb_read gave signal 'v' the value inf; a failed sensor "
                              r"reads NaN"),
    ("osi", "status", _osi_write, r"cb_write\(device, 1, 1.0\) returned 7, which is no status "
                                  r"code"),
    ("bank", "count", _measure, r"cb_measure returned 1025 samples, more than the 1024 it "
                                r"was given room for"),
    ("bank", "age", _measure, r"cb_measure gave a sample aged -1.0 s"),
    ("bank", "channel", _measure, r"cb_measure gave a sample of channel 7; the channels are "
                                  r"0..1"),
    ("bank", "missing", _measure, r"cb_measure gave no sample of channel 1"),
    ("bank", "order", _measure, r"cb_measure gave the samples of channel 0 out of time order"),
]


@pytest.mark.parametrize(("isolation", "variant", "kind", "call", "message"),
                         _isolations(IN_CALLS, {"count", "order"}))
def test_garbage_replies_are_bad_replies(
        libraries: Libraries, faults: Faults, make: Make, isolation: str, variant: str, kind: str,
        call: Call, message: str) -> None:
    async def run() -> None:
        build = make.osi if variant == "osi" else make.bank
        device = build(libraries.faulty, isolation=isolation, config=faults.config)
        await device.open(RealClock())
        try:
            faults.set("garbage", kind)
            with pytest.raises(BadReply, match=message):
                await call(device)
            faults.clear()
            await call(device)  # the device goes on; the runner decides what a BadReply means
        finally:
            await device.close()

    asyncio.run(run())


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_nan_is_a_failed_sensor_and_passes_as_nan(
        libraries: Libraries, faults: Faults, make: Make, isolation: str) -> None:
    async def run() -> None:
        faults.set("garbage", "nan")
        device = make.osi(libraries.faulty, isolation=isolation, config=faults.config)
        bank = make.bank(libraries.faulty, isolation=isolation, config=faults.config)
        await device.open(RealClock())
        await bank.open(RealClock())
        try:
            assert math.isnan((await device.read())["v"].value)
            assert (await bank.measure()).voltage_v.tolist() == [pytest.approx(math.nan,
                                                                               nan_ok=True)] * 2
        finally:
            await device.close()
            await bank.close()

    asyncio.run(run())


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_refusals_checked_before_the_library_and_by_it(
        libraries: Libraries, faults: Faults, make: Make, isolation: str) -> None:
    async def run() -> None:
        device = make.osi(libraries.faulty, isolation=isolation, config=faults.config)
        bank = make.bank(libraries.faulty, isolation=isolation, config=faults.config)
        await device.open(RealClock())
        await bank.open(RealClock())
        try:
            with pytest.raises(OutOfRange, match=r"cb_write\(device, 1, 2.0\) returned -3 "
                               r"\(CB_OUT_OF_RANGE\): injected failure in cb_write"):
                await device.write("switch", 2.0)
            with pytest.raises(NotSupported, match="signal 'v' is read-only"):
                await device.write("v", 1.0)
            with pytest.raises(OutOfRange, match=r"no signal 'w' \(signals: v, switch\)"):
                await device.write("w", 1.0)
            with pytest.raises(NotSupported, match=r"cb_apply\(device, 0, CR\) returned -2"):
                await bank.apply(0, Step(StepMode.CR, resistance_ohm=2.0))
            with pytest.raises(OutOfRange, match=r"channel 1, cc step: current 2.5 A is "
                               r"beyond ±2.0 A"):
                await bank.apply(1, Step(StepMode.CC, current_a=2.5))
            assert not [f for _, f, _ in faults.calls() if f == "cb_apply" and _ == 1]
        finally:
            await device.close()
            await bank.close()

    asyncio.run(run())

"""Bad input refused before the output goes on; an instrument that refuses, answers late,
garbles or goes away leaves the channel with its output off."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cellbench_scpi.driver import pair_channel
from cellbench_scpi.emulator import Emulator
from cellbench_scpi.settings import PairSettings
from cellbench_sdk import (
    BadReply,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    NotSupported,
    OutOfRange,
    RealClock,
    Step,
    StepLimits,
    StepMode,
)
from cellbench_sdk.emulation import LineFaults

from .conftest import driver_for

LIMITS = StepLimits(voltage_max_v=4.2, voltage_min_v=2.5, charge_current_max_a=0.8,
                    discharge_current_max_a=0.8)


@pytest.mark.parametrize(("step", "error", "reason"), [
    (Step(StepMode.CC, current_a=1.5), OutOfRange,
     "channel 0, cc step (1.5 A): 1.5 A is beyond the instrument's range ±1.05 A"),
    (Step(StepMode.CC, current_a=-0.9, limits=LIMITS), OutOfRange,
     "channel 0, cc step (-0.9 A): -0.9 A is beyond the battery's and the plan's "
     "current limit 0.8 A"),
    (Step(StepMode.CV, voltage_v=4.3, current_a=0.1, limits=LIMITS), OutOfRange,
     "4.3 V is beyond the safety limits 2.5..4.2 V"),
    (Step(StepMode.CV, voltage_v=30.0, current_a=0.5), OutOfRange,
     "channel 0, cv step (0.5 A, 30 V): 0.5 A needs the ±1.05 A / 21 V range and "
     "30 V the ±0.105 A / 210 V range: the step would need a range change"),
])
def test_a_step_beyond_what_may_be_done_is_refused_before_the_output_goes_on(
        step: Step, error: type[DeviceError], reason: str) -> None:
    async def run() -> tuple[str, list[str]]:
        async with Emulator.create("smu") as emulator:
            driver = driver_for(emulator, "smu")
            await driver.open(RealClock())
            try:
                with pytest.raises(error) as refused:
                    await driver.apply(0, step)
            finally:
                await driver.close()
            return str(refused.value), list(emulator.instruments[0].received)

    message, log = asyncio.run(run())
    assert message.endswith(reason)
    assert message.startswith("scpi-smu@TCPIP::127.0.0.1::")
    assert ":OUTP ON" not in log


def test_a_mode_the_channel_cannot_do_is_refused() -> None:
    """A discharge-only channel (a load without a supply) cannot charge."""
    async def run() -> tuple[str, bool]:
        async with Emulator.create("load") as emulator:
            driver = pair_channel(PairSettings.model_validate(
                {"only": "load", "load": {"resource": emulator.resource()}}))
            await driver.open(RealClock())
            try:
                with pytest.raises(NotSupported) as refused:
                    await driver.apply(0, Step(StepMode.CC, current_a=0.5))
                await driver.apply(0, Step(StepMode.CC, current_a=-0.5))  # it can discharge
                on = emulator.instruments[0].output_on
            finally:
                await driver.close()
            return str(refused.value), on

    message, discharging = asyncio.run(run())
    assert message.endswith("the channel has no supply: it cannot charge")
    assert discharging


@pytest.mark.parametrize(("settings", "idn", "reason"), [
    ({"command_set": "keithley-2400"}, "Keysight Technologies,B2901A,MY1,3.4",
     "*IDN? answered 'Keysight Technologies,B2901A,MY1,3.4', which is not a Keithley "
     "2400-family SourceMeter (2400, 2401, 2410, 2420, 2440) (command_set 'keithley-2400')"),
    ({}, "ACME,PSU-9,1,1", "*IDN? answered 'ACME,PSU-9,1,1', which is no smu this driver "
                           "knows; set command_set if it speaks one of keithley-2400, "
                           "keithley-2450, keysight-b2900"),
])
def test_another_instrument_is_refused_at_open(settings: dict[str, Any], idn: str,
                                               reason: str) -> None:
    async def run() -> str:
        emulator = Emulator.create("smu")
        emulator.instruments[0].idn = idn
        async with emulator:
            driver = driver_for(emulator, "smu", **settings)
            with pytest.raises(DeviceError) as refused:
                await driver.open(RealClock())
            await driver.close()
            assert not emulator.instruments[0].output_on
        return str(refused.value)

    assert asyncio.run(run()).endswith(reason)


def _slow(emulator: Emulator) -> None:
    emulator.instruments[0].faults.slow_s = 0.5


def _garbled(emulator: Emulator) -> None:
    emulator.instruments[0].faults.garbled = True


def _dropped(emulator: Emulator) -> None:
    emulator.instruments[0].faults.drop = True


@pytest.mark.parametrize(("fault", "error", "reason"), [
    (_slow, DeviceTimeout, "no answer to 'MEAS:ARR?' within 0.2 s"),
    (_garbled, BadReply, "garbled reply to 'MEAS:ARR?' (not ASCII text)"),
    (_dropped, DeviceConnectionError, "connection lost: the instrument closed it during "
                                      "'MEAS:ARR?'"),
])
def test_a_failing_instrument_ends_with_its_output_off(
        fault: Callable[[Emulator], None], error: type[DeviceError], reason: str) -> None:
    """The output is off at once where the instrument can still be reached; where it cannot,
    once it is back (close() reconnects to switch it off)."""
    async def run() -> tuple[str, bool, bool]:
        async with Emulator.create("bidirectional") as emulator:
            driver = driver_for(emulator, "bidirectional", timeout_s=0.2, watchdog_s=0)
            await driver.open(RealClock())
            await driver.apply(0, Step(StepMode.CC, current_a=1.0))
            unit = emulator.instruments[0]
            assert unit.output_on
            fault(emulator)
            try:
                with pytest.raises(error) as failed:
                    await driver.measure()
                on_at_once = unit.output_on
                unit.faults = LineFaults()  # the instrument is back
            finally:
                await driver.close()
            return str(failed.value), on_at_once, unit.output_on

    message, on_at_once, on_after_close = asyncio.run(run())
    assert message.endswith(reason)
    assert not on_at_once or fault is _dropped
    assert not on_after_close


def test_a_refused_setting_is_a_device_error_and_the_output_stays_off() -> None:
    async def run() -> tuple[str, bool]:
        async with Emulator.create("bidirectional") as emulator:
            driver = driver_for(emulator, "bidirectional")
            await driver.open(RealClock())
            emulator.instruments[0].refuse = {"output_on"}
            try:
                with pytest.raises(DeviceError) as refused:
                    await driver.apply(0, Step(StepMode.CC, current_a=1.0))
            finally:
                await driver.close()
            return str(refused.value), emulator.instruments[0].output_on

    message, on = asyncio.run(run())
    assert message.endswith("""'OUTP ON' refused: -221,"Settings conflict\"""")
    assert not on

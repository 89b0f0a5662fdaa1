"""Byte-exact conversations of the driver with a scripted controller."""

import asyncio
import math

import pytest

from cellbench_espec.chamber import EspecChamber, espec_chamber
from cellbench_espec.settings import EspecSettings
from cellbench_sdk import DeviceError, OutOfRange, RealClock
from cellbench_sdk.testing import expected_protocol

OPEN = (b"TEMP?\r\n", b"23.0,23.0,100.0,-20.0\r\n")


def chamber(port: int, **settings: object) -> EspecChamber:
    return espec_chamber(EspecSettings.model_validate({"address": f"127.0.0.1:{port}",
                                                       "timeout_s": 0.5, **settings}))


def test_set_start_read_stop() -> None:
    async def run() -> None:
        async with expected_protocol([
            OPEN,
            (b"TEMP, S-12.5\r\n", b"OK: TEMP, S-12.5\r\n"),
            (b"MODE, CONSTANT\r\n", b"OK: MODE, CONSTANT\r\n"),
            (b"MON?\r\n", b"18.4,,CONSTANT,0\r\n"),
            (b"TEMP?\r\n", b"18.4,-12.5,100.0,-20.0\r\n"),
            (b"MODE, STANDBY\r\n", b"OK: MODE, STANDBY\r\n"),
        ]) as instrument:
            device = chamber(instrument.port)
            await device.open(RealClock())
            await device.set_temperature(-12.5)
            await device.start()
            state = await device.read()
            await device.stop()
            await device.close()
        assert (state.temperature_c, state.setpoint_c, state.running) == (18.4, -12.5, True)
        assert state.humidity_pct is None

    asyncio.run(run())


def test_humidity_set_and_read() -> None:
    async def run() -> None:
        async with expected_protocol([
            OPEN,
            (b"HUMI, S85.0\r\n", b"OK: HUMI, S85.0\r\n"),
            (b"MON?\r\n", b"40.1,61.0,STANDBY,0\r\n"),
            (b"TEMP?\r\n", b"40.1,40.0,100.0,-20.0\r\n"),
            (b"HUMI?\r\n", b"61.0,85.0,100.0,0.0\r\n"),
        ]) as instrument:
            device = chamber(instrument.port, humidity=True)
            await device.open(RealClock())
            await device.set_humidity(85.0)
            state = await device.read()
            await device.close()
        assert (state.humidity_pct, state.setpoint_humidity_pct, state.running) == \
            (61.0, 85.0, False)

    asyncio.run(run())


@pytest.mark.parametrize("celsius", [math.nan, math.inf, -20.5, 100.5, -40.0])
def test_setpoints_outside_the_range_are_refused_before_sending(celsius: float) -> None:
    """The range is the settings' (-40..150 °C) narrowed to the controller's (-20..100 °C)."""
    async def run() -> None:
        async with expected_protocol([OPEN]) as instrument:
            device = chamber(instrument.port)
            await device.open(RealClock())
            with pytest.raises(OutOfRange, match=r"espec@127\.0\.0\.1:\d+: .* is outside "
                                                 r"-20\.\.100 °C"):
                await device.set_temperature(celsius)
            await device.close()

    asyncio.run(run())


def test_humidity_outside_0_100_is_refused_before_sending() -> None:
    async def run() -> None:
        async with expected_protocol([OPEN]) as instrument:
            device = chamber(instrument.port, humidity=True)
            await device.open(RealClock())
            for bad in (math.nan, -1.0, 100.5):
                with pytest.raises(OutOfRange):
                    await device.set_humidity(bad)
            await device.close()

    asyncio.run(run())


def test_a_refusal_names_the_chamber_the_command_and_the_reason() -> None:
    async def run() -> None:
        async with expected_protocol([
            OPEN,
            (b"TEMP, S50.0\r\n", b"NA:PROTECT ON\r\n"),
            (b"MODE, CONSTANT\r\n", b"NA:DATA OUT OF RANGE\r\n"),
        ]) as instrument:
            device = chamber(instrument.port)
            await device.open(RealClock())
            with pytest.raises(DeviceError) as refused:
                await device.set_temperature(50.0)
            assert str(refused.value) == (f"espec@127.0.0.1:{instrument.port}: refused "
                                          "'TEMP, S50.0': PROTECT ON")
            with pytest.raises(OutOfRange, match="refused 'MODE, CONSTANT': DATA OUT OF RANGE"):
                await device.start()
            await device.close()

    asyncio.run(run())

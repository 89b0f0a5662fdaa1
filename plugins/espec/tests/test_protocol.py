"""Byte-exact conversations of the driver with a scripted controller."""

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from cellbench_espec.chamber import EspecChamber, EspecHumidityChamber, espec_chamber
from cellbench_espec.settings import EspecSettings
from cellbench_sdk import BadReply, ChamberState, DeviceError, OutOfRange, RealClock
from cellbench_sdk.testing import expected_protocol

T = TypeVar("T")
OPEN = (b"TEMP?\r\n", b"23.0,23.0,100.0,-20.0\r\n")


def converse(pairs: list[tuple[bytes, bytes]], scenario: Callable[[EspecChamber], Awaitable[T]],
             **settings: object) -> T:
    """Open a chamber on a controller that must hear OPEN and then ``pairs``, run
    ``scenario`` on it, close it; what the scenario returned."""
    async def run() -> T:
        async with expected_protocol([OPEN, *pairs]) as instrument:
            device = espec_chamber(EspecSettings.model_validate(
                {"address": f"127.0.0.1:{instrument.port}", "timeout_s": 0.5, **settings}))
            await device.open(RealClock())
            try:
                return await scenario(device)
            finally:
                await device.close()

    return asyncio.run(run())


def test_set_start_read_stop() -> None:
    async def scenario(device: EspecChamber) -> ChamberState:
        await device.set_temperature(-12.5)
        await device.start()
        state = await device.read()
        await device.stop()
        return state

    state = converse([
        (b"TEMP, S-12.5\r\n", b"OK: TEMP, S-12.5\r\n"),
        (b"MODE, CONSTANT\r\n", b"OK: MODE, CONSTANT\r\n"),
        (b"MON?\r\n", b"18.4,,CONSTANT,0\r\n"),
        (b"TEMP?\r\n", b"18.4,-12.5,100.0,-20.0\r\n"),
        (b"MODE, STANDBY\r\n", b"OK: MODE, STANDBY\r\n"),
    ], scenario)
    assert (state.temperature_c, state.setpoint_c, state.running) == (18.4, -12.5, True)
    assert state.humidity_pct is None


def test_humidity_set_and_read() -> None:
    async def scenario(device: EspecChamber) -> ChamberState:
        assert isinstance(device, EspecHumidityChamber)
        await device.set_humidity(85.0)
        return await device.read()

    state = converse([
        (b"HUMI, S85.0\r\n", b"OK: HUMI, S85.0\r\n"),
        (b"MON?\r\n", b"40.1,61.0,STANDBY,0\r\n"),
        (b"TEMP?\r\n", b"40.1,40.0,100.0,-20.0\r\n"),
        (b"HUMI?\r\n", b"61.0,85.0,100.0,0.0\r\n"),
    ], scenario, humidity=True)
    assert (state.humidity_pct, state.setpoint_humidity_pct, state.running) == \
        (61.0, 85.0, False)


@pytest.mark.parametrize("celsius", [math.nan, math.inf, -20.5, 100.5, -40.0])
def test_setpoints_outside_the_range_are_refused_before_sending(celsius: float) -> None:
    """The range is the settings' (-40..150 °C) narrowed to the controller's (-20..100 °C)."""
    async def scenario(device: EspecChamber) -> None:
        with pytest.raises(OutOfRange, match=r"espec@127\.0\.0\.1:\d+: .* is outside "
                                             r"-20\.\.100 °C"):
            await device.set_temperature(celsius)

    converse([], scenario)


def test_humidity_outside_0_100_is_refused_before_sending() -> None:
    async def scenario(device: EspecChamber) -> None:
        for bad in (math.nan, -1.0, 100.5):
            with pytest.raises(OutOfRange):
                await device.set_humidity(bad)

    converse([], scenario, humidity=True)


def test_a_refusal_names_the_chamber_the_command_and_the_reason() -> None:
    async def scenario(device: EspecChamber) -> None:
        with pytest.raises(DeviceError) as refused:
            await device.set_temperature(50.0)
        assert str(refused.value) == f"{device.name}: refused 'TEMP, S50.0': PROTECT ON"
        with pytest.raises(OutOfRange, match="refused 'MODE, CONSTANT': DATA OUT OF RANGE"):
            await device.start()

    converse([
        (b"TEMP, S50.0\r\n", b"NA:PROTECT ON\r\n"),
        (b"MODE, CONSTANT\r\n", b"NA:DATA OUT OF RANGE\r\n"),
    ], scenario)


@pytest.mark.parametrize(("reply", "problem"), [
    (b"18.4,CONSTANT,0\r\n", "not 4 fields"),
    (b"hot,,CONSTANT,0\r\n", "'hot' is no number"),
    (b"nan,,CONSTANT,0\r\n", "'nan' is no number"),
])
def test_a_malformed_reply_is_a_bad_reply_quoting_it(reply: bytes, problem: str) -> None:
    async def scenario(device: EspecChamber) -> None:
        with pytest.raises(BadReply, match=f"MON\\? answered .*{problem}"):
            await device.read()

    converse([(b"MON?\r\n", reply)], scenario)


def test_a_command_not_acknowledged_with_ok_is_a_bad_reply() -> None:
    async def scenario(device: EspecChamber) -> None:
        with pytest.raises(BadReply, match="'MODE, STANDBY' answered '23.0', not 'OK: ...'"):
            await device.stop()

    converse([(b"MODE, STANDBY\r\n", b"23.0\r\n")], scenario)

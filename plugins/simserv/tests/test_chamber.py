"""The SIMSERV chamber against scripted conversations and the emulator, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cellbench_sdk import (
    BadReply,
    DeviceConnectionError,
    DeviceTimeout,
    OutOfRange,
    RealClock,
)
from cellbench_sdk.testing import HANG_UP, expected_protocol
from cellbench_simserv.chamber import (
    ChamberAlarm,
    SimservChamber,
    SimservError,
    create_chamber,
)
from cellbench_simserv.emulator import SimservEmulator, serve
from cellbench_simserv.protocol import Command
from cellbench_simserv.settings import SimservSettings

STATUS = b"10012\xb61\r"
IDLE = b"1\xb61\r"


@asynccontextmanager
async def opened(port: int, **settings: Any) -> AsyncIterator[SimservChamber]:
    chamber = create_chamber(SimservSettings(port=port, timeout_s=0.3, **settings))
    await chamber.open(RealClock())
    try:
        yield chamber
    finally:
        await chamber.close()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def test_set_start_read_stop_byte_exact() -> None:
    async def body() -> None:
        async with expected_protocol([
            (STATUS, IDLE),
            (b"11001\xb61\xb61\xb6-20.00\r", b"1\r"),
            (b"14001\xb61\xb61\xb61\r", b"1\r"),
            (STATUS, b"1\xb63\r"),
            (b"11004\xb61\xb61\r", b"1\xb623.4\r"),
            (b"11002\xb61\xb61\r", b"1\xb6-20.00\r"),
            (b"14001\xb61\xb61\xb60\r", b"1\r"),
        ]) as controller, opened(controller.port) as chamber:
            await chamber.set_temperature(-20.0)
            await chamber.start()
            state = await chamber.read()
            await chamber.stop()
        assert (state.temperature_c, state.setpoint_c, state.running) == (23.4, -20.0, True)
        assert state.humidity_pct is None

    run(body)


def test_humidity_byte_exact_and_crlf_replies() -> None:
    async def body() -> None:
        async with expected_protocol([
            (STATUS, b"1\xb61\r\n"),
            (b"11001\xb61\xb62\xb655.00\r", b"1\r\n"),
            (STATUS, b"1\xb61\r\n"),
            (b"11004\xb61\xb61\r", b"1\xb625.0\r\n"),
            (b"11002\xb61\xb61\r", b"1\xb625.00\r\n"),
            (b"11004\xb61\xb62\r", b"1\xb641.5\r\n"),
            (b"11002\xb61\xb62\r", b"1\xb655.00\r\n"),
        ]) as controller, opened(controller.port, humidity=True) as chamber:
            await chamber.set_humidity(55.0)
            state = await chamber.read()
        assert (state.humidity_pct, state.setpoint_humidity_pct, state.running) == (
            41.5, 55.0, False)

    run(body)


@pytest.mark.parametrize("call", ["set_temperature(200)", "set_temperature(nan)",
                                  "set_humidity(99.5)", "set_humidity(-inf)"])
def test_setpoints_outside_the_range_are_refused_before_sending(call: str) -> None:
    async def body() -> None:
        async with (expected_protocol([(STATUS, IDLE)]) as controller,
                    opened(controller.port, humidity=True) as chamber):
            method, argument = call.rstrip(")").split("(")
            with pytest.raises(OutOfRange, match="simserv 127.0.0.1:.* chamber 1"):
                await getattr(chamber, method)(float(argument))

    run(body)


def test_controller_error_code_names_chamber_command_and_code() -> None:
    async def body() -> None:
        async with SimservEmulator() as emulator, opened(emulator.port) as chamber:
            emulator.faults.refuse_setpoints = True
            with pytest.raises(SimservError) as refused:
                await chamber.set_temperature(40.0)
            assert refused.value.code == -6 and refused.value.command is Command.SET_SETPOINT
            assert str(refused.value) == (
                f"simserv 127.0.0.1:{emulator.port} chamber 1: command 11001 (set setpoint) "
                f"refused with code -6 (too few or incorrect parameters)")
            assert emulator.setpoints[1] == 25.0

    run(body)


def test_unknown_command_code() -> None:
    async def body() -> None:
        async with expected_protocol([(STATUS, b"-5\r")]) as controller:
            chamber = create_chamber(SimservSettings(port=controller.port, timeout_s=0.3))
            with pytest.raises(SimservError, match=r"10012 \(status\) refused with code -5 "
                                                   r"\(command number unknown\)"):
                await chamber.open(RealClock())
            await chamber.close()

    run(body)


@pytest.mark.parametrize("fault", ["garbled", "silent", "drop_mid_reply", "slow"])
def test_faults_give_typed_errors_naming_the_chamber(fault: str) -> None:
    expected = {"garbled": BadReply, "silent": DeviceTimeout, "slow": DeviceTimeout,
                "drop_mid_reply": DeviceConnectionError}[fault]

    async def body() -> None:
        async with SimservEmulator() as emulator, opened(emulator.port) as chamber:
            if fault == "slow":
                emulator.faults.delay_s = 0.6
            else:
                setattr(emulator.faults, fault, True)
            with pytest.raises(expected, match=f"simserv 127.0.0.1:{emulator.port} chamber 1"):
                await chamber.read()

    run(body)


def test_slow_within_the_timeout_answers() -> None:
    async def body() -> None:
        async with SimservEmulator() as emulator, opened(emulator.port) as chamber:
            emulator.faults.delay_s = 0.02
            assert (await chamber.read()).temperature_c == 25.0

    run(body)


def test_bad_values_are_bad_replies() -> None:
    async def body() -> None:
        async with expected_protocol([
            (STATUS, IDLE),
            (STATUS, IDLE),
            (b"11004\xb61\xb61\r", b"1\xb6nan\r"),
            (STATUS, b"1\xb6x\r"),
            (STATUS, b"1\xb61\xb62\r"),
        ]) as controller, opened(controller.port) as chamber:
            with pytest.raises(BadReply, match=r"11004 \(read actual\): 'nan' is not a"):
                await chamber.read()
            with pytest.raises(BadReply, match="'x' is not an integer"):
                await chamber.read()
            with pytest.raises(BadReply, match="expected one value"):
                await chamber.read()

    run(body)


def test_connection_lost_before_reply() -> None:
    async def body() -> None:
        async with (expected_protocol([(STATUS, IDLE), (STATUS, HANG_UP)]) as controller,
                    opened(controller.port) as chamber):
            with pytest.raises(DeviceConnectionError, match="chamber 1"):
                await chamber.read()

    run(body)


@pytest.mark.parametrize("fault", ["door", "alarm"])
def test_door_and_alarm_raise_chamber_alarm_with_the_message(fault: str) -> None:
    async def body() -> None:
        async with SimservEmulator() as emulator, opened(emulator.port) as chamber:
            if fault == "door":
                emulator.door_open = True
            else:
                emulator.alarm = "Temperature max limit"
            with pytest.raises(ChamberAlarm) as raised:
                await chamber.read()
            text = "Door open" if fault == "door" else "Temperature max limit"
            number = 1 if fault == "door" else 2
            assert raised.value.alarms == [(number, text)]
            assert f"chamber 1: alarm (status 9): message {number}: {text}" in str(raised.value)
            emulator.door_open, emulator.alarm = False, None
            await chamber.read()

    run(body)


def test_temperature_and_humidity_approach_their_setpoints() -> None:
    async def body() -> None:
        async with (SimservEmulator(humidity=True, time_constant_s=60.0,
                                    max_ramp_k_per_min=5.0) as emulator,
                    opened(emulator.port, humidity=True) as chamber):
            await chamber.set_temperature(60.0)
            await chamber.set_humidity(80.0)
            await chamber.start()
            gaps = []
            for _ in range(6):
                emulator.advance(60.0)
                state = await chamber.read()
                gaps.append(state.setpoint_c - state.temperature_c)
            assert all(later < earlier for earlier, later in itertools.pairwise(gaps))
            assert gaps[0] == pytest.approx(35.0 - 5.0, abs=0.2)  # the ramp limit holds
            emulator.advance(3600.0)
            state = await chamber.read()
            assert math.isclose(state.temperature_c, 60.0, abs_tol=0.1)
            assert math.isclose(state.humidity_pct or 0.0, 80.0, abs_tol=0.1)
            await chamber.stop()
            emulator.advance(3600.0)
            assert math.isclose((await chamber.read()).temperature_c, 25.0, abs_tol=0.1)

    run(body)


def test_door_open_drifts_to_ambient() -> None:
    async def body() -> None:
        async with SimservEmulator() as emulator, opened(emulator.port) as chamber:
            await chamber.set_temperature(-20.0)
            await chamber.start()
            emulator.door_open = True
            emulator.advance(60.0)
            emulator.door_open = False
            assert (await chamber.read()).temperature_c == 25.0

    run(body)


def test_emulator_answers_bad_commands_with_codes() -> None:
    emulator = SimservEmulator(humidity=False)
    assert emulator.handle("99999\xb61") == "-5"
    assert emulator.handle("11002\xb61\xb62") == "-6"  # no humidity
    assert emulator.handle("11002\xb62\xb61") == "-6"  # no chamber 2
    assert emulator.handle("11001\xb61\xb61\xb6999") == "-6"
    assert emulator.handle("17009\xb61\xb63") == "-6"
    assert emulator.handle("17002\xb61") == "1\xb62"
    assert emulator.handle("17005\xb61\xb61") == "1\xb61"


def test_alarm_without_scanning_messages() -> None:
    async def body() -> None:
        async with (expected_protocol([(STATUS, IDLE), (STATUS, b"1\xb69\r")]) as controller,
                    opened(controller.port, alarm_messages=0) as chamber):
            with pytest.raises(ChamberAlarm, match=r"alarm \(status 9\): no alarm message"):
                await chamber.read()

    run(body)


def test_serve_runs_an_emulator_until_cancelled(unreachable_port: int) -> None:
    async def body() -> None:
        server = asyncio.create_task(serve("127.0.0.1", unreachable_port, humidity=True))
        for _ in range(100):
            await asyncio.sleep(0.02)
            with contextlib.suppress(DeviceConnectionError):
                async with opened(unreachable_port, humidity=True) as chamber:
                    assert (await chamber.read()).humidity_pct == 40.0
                    break
        else:
            raise AssertionError("serve() did not answer")
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server

    run(body)


def test_speed_runs_the_model_faster_than_the_wall_clock() -> None:
    async def body() -> None:
        async with (SimservEmulator(speed=1e5) as emulator,
                    opened(emulator.port) as chamber):
            await chamber.set_temperature(80.0)
            await chamber.start()
            await asyncio.sleep(0.05)  # at least 5000 model seconds: settled
            assert math.isclose((await chamber.read()).temperature_c, 80.0, abs_tol=0.1)

    run(body)

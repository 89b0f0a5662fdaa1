"""The driver against its emulator: every injected fault gives its typed error naming the
chamber, the thermal model follows its setpoint, and the protocol runs on a serial port (a
pseudo-terminal) as on TCP."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from cellbench_espec.chamber import ChamberAlarm, EspecChamber, espec_chamber
from cellbench_espec.emulator import DOOR_OPEN, EspecEmulator, Faults
from cellbench_espec.settings import EspecSettings
from cellbench_sdk import (
    BadReply,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    RealClock,
)
from cellbench_sdk.testing import check_climate_chamber

Scenario = Callable[[EspecChamber], Awaitable[object]]


async def with_chamber(emulator: EspecEmulator, scenario: Scenario, **settings: object) -> None:
    async with emulator:
        device = espec_chamber(EspecSettings.model_validate(
            {"address": f"127.0.0.1:{emulator.port}", "timeout_s": 0.3, **settings}))
        await device.open(RealClock())
        try:
            await scenario(device)
        finally:
            await device.close()


@pytest.mark.parametrize(("faults", "error", "message"), [
    (Faults(slow_s=0.6), DeviceTimeout, "no complete reply|within"),
    (Faults(silent=True), DeviceTimeout, "TEMP\\?|MON\\?|within|reply"),
    (Faults(garbled=True), BadReply, "ascii|encoding|not"),
    (Faults(drop=True), DeviceConnectionError, "closed|lost"),
    (Faults(door_open=True), ChamberAlarm, f"alarm {DOOR_OPEN}$"),
    (Faults(alarms=[27, 31]), ChamberAlarm, "alarm 27, 31$"),
], ids=["slow", "silent", "garbled", "drop", "door open", "alarm"])
def test_a_fault_in_read_raises_its_typed_error(faults: Faults, error: type[DeviceError],
                                                message: str) -> None:
    emulator = EspecEmulator()

    async def scenario(device: EspecChamber) -> None:
        emulator.faults = faults
        with pytest.raises(error, match=message) as raised:
            await device.read()
        assert raised.value.device == device.name

    asyncio.run(with_chamber(emulator, scenario))


def test_the_driver_recovers_when_a_late_reply_has_passed() -> None:
    emulator = EspecEmulator()

    async def scenario(device: EspecChamber) -> None:
        emulator.faults.slow_s = 0.4
        with pytest.raises(DeviceTimeout):
            await device.set_temperature(30.0)
        emulator.faults.slow_s = 0.0
        state = await device.read()  # the late "OK: ..." is dropped, not read as MON?'s reply
        assert (state.temperature_c, state.setpoint_c) == (23.0, 30.0)

    asyncio.run(with_chamber(emulator, scenario))


def test_a_refused_setpoint_names_the_chamber_command_and_message() -> None:
    emulator = EspecEmulator()

    async def scenario(device: EspecChamber) -> None:
        emulator.faults.refuse = "CHB NOT READY"
        with pytest.raises(DeviceError, match=r"^espec@127\.0\.0\.1:\d+: refused "
                                              r"'TEMP, S30\.0': CHB NOT READY$"):
            await device.set_temperature(30.0)
        assert emulator.setpoint_c == 23.0

    asyncio.run(with_chamber(emulator, scenario))


def test_a_chamber_without_humidity_answers_na_to_humi() -> None:
    emulator = EspecEmulator()
    assert emulator.respond("HUMI, S50") == "NA:CONT NOT READY-1"
    assert emulator.respond("HUMI?") == "NA:CONT NOT READY-1"
    assert emulator.respond("TEMP, S999") == "NA:DATA OUT OF RANGE"
    assert emulator.respond("FOO?") == "NA:CMD ERR"
    assert emulator.respond("MON?") == "23.0,,STANDBY,0"


def test_the_temperature_approaches_the_setpoint_no_faster_than_the_ramp() -> None:
    now = [0.0]
    emulator = EspecEmulator(humidity=True, time_constant_s=300.0, ramp_c_per_min=2.0,
                             clock=lambda: now[0])
    assert emulator.respond("TEMP, S-20.0") == "OK: TEMP, S-20.0"
    assert emulator.respond("HUMI, S80") == "OK: HUMI, S80"
    assert emulator.respond("MODE, CONSTANT") == "OK: MODE, CONSTANT"
    gaps = []
    for _ in range(120):
        before = emulator.temperature_c
        now[0] += 60.0
        emulator.advance()
        assert before - 2.0 - 1e-9 <= emulator.temperature_c <= before
        gaps.append(emulator.temperature_c + 20.0)
    assert gaps[0] == pytest.approx(41.0)  # ramp-limited at first: 2 °C in a minute
    assert gaps[-1] < 0.05  # then first order
    assert emulator.humidity_pct == pytest.approx(80.0, abs=0.1)
    emulator.respond("MODE, STANDBY")
    now[0] += 3600.0
    assert float(emulator.respond("TEMP?").split(",")[0]) > 0.0  # back towards ambient


def test_speed_runs_the_model_faster_than_the_wall_clock() -> None:
    now = [0.0]
    emulator = EspecEmulator(speed=60.0, ramp_c_per_min=0.5, clock=lambda: now[0])
    emulator.respond("TEMP, S30")
    emulator.respond("MODE, CONSTANT")
    now[0] += 1.0  # one wall second is a model minute: 0.5 °C at this ramp
    emulator.advance()
    assert emulator.temperature_c == pytest.approx(23.5)


def test_the_driver_reads_the_model_through_the_socket() -> None:
    now = [0.0]
    emulator = EspecEmulator(clock=lambda: now[0])

    async def scenario(device: EspecChamber) -> None:
        await device.set_temperature(60.0)
        await device.start()
        first = await device.read()
        now[0] += 600.0
        second = await device.read()
        assert first.temperature_c < second.temperature_c < 60.0
        assert (second.setpoint_c, second.running) == (60.0, True)

    asyncio.run(with_chamber(emulator, scenario))


def test_the_contract_holds_over_a_serial_port() -> None:
    async def run() -> None:
        emulator = EspecEmulator(humidity=True)
        path = await emulator.start_pty()
        try:
            device = espec_chamber(EspecSettings(port=path, baudrate=19200, humidity=True))
            assert device.name == f"espec@{path}"
            await check_climate_chamber(device, setpoint_c=40.0, humidity_pct=70.0)
        finally:
            await emulator.stop()
        assert list(emulator.received)[:3] == ["TEMP?", "MON?", "TEMP?"]

    asyncio.run(run())

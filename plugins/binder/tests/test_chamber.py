"""The Binder chamber against its emulator over real sockets: the kit's contract, byte-exact
conversations, every injected fault, the range check and the thermal model."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from cellbench_binder.chamber import ChamberFault, create_chamber
from cellbench_binder.emulator import BinderEmulator, BinderModel, serve
from cellbench_binder.registers import MB1_BASIC, MB1_MANUAL, float_to_words, words_to_float
from cellbench_binder.settings import BinderSettings
from cellbench_sdk import (
    BadReply,
    ClimateChamber,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    OutOfRange,
    RealClock,
)
from cellbench_sdk.testing import ClimateChamberContract, expected_protocol

from .conftest import rtu, words


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


#: Byte-exact conversations check bytes, not timing: a generous timeout keeps a busy machine
#: (the whole suite on two cores) from failing them at connect.
CONVERSATION_TIMEOUT_S = 5.0


def chamber(tcp_port: int, **settings: Any) -> ClimateChamber:
    base: dict[str, Any] = {"address": f"127.0.0.1:{tcp_port}", "timeout_s": 0.3}
    return create_chamber(BinderSettings(**{**base, **settings}))


class TestBinderChamber(ClimateChamberContract):
    """The kit's checks against the emulator, per controller family and framing."""

    plugin = "cellbench_binder.plugin"
    name = "binder"
    entry_point = "binder"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "MB1 rtu-over-tcp": {"controller": "MB1"},
        "MB2 modbus-tcp humidity": {
            "controller": "MB2", "framing": "modbus-tcp", "has_humidity": True
        },
    }
    setpoint_c = 40.0

    @asynccontextmanager
    async def peer(self, settings: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        model = BinderModel(family=settings["controller"], speed=10.0)
        framing = settings.get("framing", "rtu-over-tcp")
        async with BinderEmulator(framing=framing, model=model) as emu:
            yield {**settings, "address": f"127.0.0.1:{emu.port}", "timeout_s": 0.5}

    def unreachable(self, port: int) -> dict[str, Any]:
        return {"address": f"127.0.0.1:{port}", "timeout_s": 0.5}


def test_rtu_over_tcp_conversation() -> None:
    """open, set_temperature, start and read, byte for byte (MB1, unit 3, floats low word first)."""
    forty = float_to_words(40.0)  # 0x42200000: low word 0x0000, then 0x4220
    assert forty == [0x0000, 0x4220]
    actual = float_to_words(21.5)

    async def body() -> None:
        pairs = [
            (rtu(3, 3, words(0x1A22, 1)), rtu(3, 3, 2, words(MB1_BASIC))),  # open: mode
            (rtu(3, 16, words(0x1077, 2), 4, words(*forty)), rtu(3, 16, words(0x1077, 2))),
            (rtu(3, 6, words(0x1A22, MB1_MANUAL)), rtu(3, 6, words(0x1A22, MB1_MANUAL))),
            (rtu(3, 3, words(0x11A9, 2)), rtu(3, 3, 4, words(*actual))),  # temperature
            (rtu(3, 3, words(0x1077, 2)), rtu(3, 3, 4, words(*forty))),  # setpoint
            (rtu(3, 3, words(0x1A22, 1)), rtu(3, 3, 2, words(MB1_MANUAL))),  # mode
            (rtu(3, 3, words(0x1A30, 1)), rtu(3, 3, 2, words(0))),  # door
            (rtu(3, 3, words(0x1A31, 1)), rtu(3, 3, 2, words(0))),  # alarm
        ]
        async with expected_protocol(pairs) as instrument:
            c = chamber(instrument.port, unit=3, timeout_s=CONVERSATION_TIMEOUT_S)
            await c.open(RealClock())
            await c.set_temperature(40.0)
            await c.start()
            state = await c.read()
            await c.close()
        assert (state.temperature_c, state.setpoint_c, state.running) == (21.5, 40.0, True)

    run(body())


def test_modbus_tcp_conversation_mb2_start_keeps_other_contacts() -> None:
    """MB2 over Modbus TCP: start clears only the idle bit of the operation contacts."""
    def mbap(tid: int, pdu: bytes) -> bytes:
        return words(tid, 0, len(pdu) + 1) + bytes([1]) + pdu

    async def body() -> None:
        contacts = 0x0042  # idle (bit 1) and anti-condensation (bit 6)
        pairs = [
            (mbap(1, bytes([3]) + words(0x1292, 1)), mbap(1, bytes([3, 2]) + words(contacts))),
            (mbap(2, bytes([3]) + words(0x1292, 1)), mbap(2, bytes([3, 2]) + words(contacts))),
            (mbap(3, bytes([6]) + words(0x1158, 0x40)), mbap(3, bytes([6]) + words(0x1158, 0x40))),
        ]
        async with expected_protocol(pairs) as instrument:
            c = chamber(instrument.port, controller="MB2", framing="modbus-tcp",
                        timeout_s=CONVERSATION_TIMEOUT_S)
            await c.open(RealClock())
            await c.start()
            await c.close()

    run(body())


def test_setpoints_outside_the_range_are_refused_before_sending() -> None:
    async def body() -> None:
        pairs = [(rtu(1, 3, words(0x1A22, 1)), rtu(1, 3, 2, words(MB1_BASIC)))]
        async with expected_protocol(pairs) as instrument:  # nothing after open may be sent
            c = chamber(instrument.port, has_humidity=True, temperature_max_c=100.0,
                        timeout_s=CONVERSATION_TIMEOUT_S)
            await c.open(RealClock())
            for bad in (100.5, -41.0, math.nan, math.inf):
                with pytest.raises(OutOfRange, match=r"binder MB1@127\.0\.0\.1"):
                    await c.set_temperature(bad)
            for bad in (-1.0, 100.1, math.nan):
                with pytest.raises(OutOfRange, match="humidity setpoint"):
                    await c.set_humidity(bad)
            await c.close()

    run(body())


FAULTS: dict[str, tuple[Callable[[BinderEmulator], None], type[DeviceError], str]] = {
    "garbled (CRC error)": (
        lambda e: setattr(e.faults, "garble", True), BadReply, "garbled reply to read of register"
    ),
    "silent": (lambda e: setattr(e.faults, "silent", True), DeviceTimeout, "no answer to read"),
    "dropped mid-reply": (
        lambda e: setattr(e.faults, "drop", True), DeviceConnectionError, "connection dropped"
    ),
    "door open": (lambda e: setattr(e.faults, "door_open", True), ChamberFault, "door open"),
    "alarm": (lambda e: setattr(e.faults, "alarm", 7), ChamberFault, "alarm 7"),
}


@pytest.mark.parametrize("framing", ["rtu-over-tcp", "modbus-tcp"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_injected_faults_raise_typed_errors_naming_the_chamber(framing: str, fault: str) -> None:
    inject, error, said = FAULTS[fault]

    async def body() -> None:
        async with BinderEmulator(framing=framing) as emu:  # type: ignore[arg-type]
            c = chamber(emu.port, framing=framing)
            await c.open(RealClock())
            await c.read()
            inject(emu)
            with pytest.raises(error, match=said) as caught:
                await c.read()
            assert str(caught.value).startswith(f"binder MB1@127.0.0.1:{emu.port}/1")
            emu.model.faults = type(emu.faults)()  # healed: the next poll answers again
            await c.read()
            await c.close()

    run(body())


def test_refused_setpoint_names_the_register_and_the_exception() -> None:
    async def body() -> None:
        async with BinderEmulator() as emu:
            c = chamber(emu.port)
            await c.open(RealClock())
            emu.faults.refuse_setpoints = True
            with pytest.raises(DeviceError, match=r"write of register 0x1077 .* = 30 °C answered "
                               r"Modbus exception 3 \(illegal data value\)"):
                await c.set_temperature(30.0)
            assert (await c.read()).setpoint_c == 25.0  # unchanged
            await c.close()

    run(body())


def test_slow_answers_beyond_the_timeout_are_a_timeout() -> None:
    async def body() -> None:
        async with BinderEmulator() as emu:
            c = chamber(emu.port, timeout_s=0.2)
            await c.open(RealClock())
            emu.faults.slow_s = 0.05  # within the timeout: answered
            await c.read()
            emu.faults.slow_s = 0.5
            with pytest.raises(DeviceTimeout):
                await c.read()
            emu.faults.slow_s = 0.0
            await asyncio.sleep(0.4)  # the late reply arrives on the closed connection
            await c.read()
            await c.close()

    run(body())


def test_a_map_that_disagrees_with_the_controller_names_register_and_exception() -> None:
    """An MB1 map read from an MB2 controller: its mode register is unknown there."""
    async def body() -> None:
        async with BinderEmulator(model=BinderModel(family="MB2")) as emu:
            c = chamber(emu.port, controller="MB1")
            with pytest.raises(DeviceError) as caught:
                await c.open(RealClock())
            await c.close()
        assert str(caught.value) == (
            f"binder MB1@127.0.0.1:{emu.port}/1: read of register 0x1A22 (mode) answered "
            "Modbus exception 2 (illegal data address)"
        )

    run(body())


def test_temperature_approaches_the_setpoint() -> None:
    """At 5000x, the chamber (time constant 300 s, ramp 3 K/min) reaches 40 °C from 25 °C."""
    async def body() -> None:
        model = BinderModel(speed=5000.0)
        async with BinderEmulator(model=model) as emu:
            c = chamber(emu.port)
            await c.open(RealClock())
            await c.set_temperature(40.0)
            await c.start()
            seen = [(await c.read()).temperature_c]
            for _ in range(200):
                await asyncio.sleep(0.01)
                seen.append((await c.read()).temperature_c)
                if abs(seen[-1] - 40.0) < 0.05:
                    break
            await c.close()
        assert abs(seen[-1] - 40.0) < 0.05
        assert all(b >= a - 1e-4 for a, b in itertools.pairwise(seen))  # rising only

    run(body())


def test_thermal_model_ramp_limit_and_first_order_approach() -> None:
    now = [0.0]
    model = BinderModel(clock=lambda: now[0], time_constant_s=100.0, max_ramp_k_per_min=6.0)
    assert model.write(model.registers.write_temperature, float_to_words(85.0)) is None
    assert model.write(model.registers.mode_write, [MB1_MANUAL]) is None
    now[0] = 60.0
    model.advance()
    assert model.temperature_c == pytest.approx(31.0)  # 6 K/min while the gap is large
    model.faults.door_open = True  # no conditioning: drifts back towards ambient
    now[0] = 120.0
    model.advance()
    assert model.temperature_c < 31.0
    read = model.read(model.registers.temperature, 2)
    assert isinstance(read, list) and words_to_float(read) == pytest.approx(model.temperature_c)


def test_serve_runs_the_emulator_for_the_command_line() -> None:
    async def body() -> None:
        started: asyncio.Future[BinderEmulator] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve("127.0.0.1", 0, framing="modbus-tcp", ready=started.set_result, family="MB2")
        )
        emu = await started
        c = chamber(emu.port, controller="MB2", framing="modbus-tcp")
        await c.open(RealClock())
        assert (await c.read()).temperature_c == pytest.approx(25.0, abs=0.1)
        await c.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(body())


def test_rtu_on_a_serial_line() -> None:
    """framing = "rtu" over a pty, bridged to the emulator's RTU-over-TCP port."""
    async def body() -> None:
        async with BinderEmulator() as emu:
            master, slave = os.openpty()
            tty.setraw(slave)
            reader, writer = await asyncio.open_connection("127.0.0.1", emu.port)
            loop = asyncio.get_running_loop()
            loop.add_reader(master, lambda: writer.write(os.read(master, 256)))

            async def replies() -> None:
                while data := await reader.read(256):
                    os.write(master, data)

            back = asyncio.create_task(replies())
            try:
                c = chamber(0, framing="rtu", port=os.ttyname(slave), timeout_s=0.5)
                await c.open(RealClock())
                await c.set_temperature(55.0)
                assert (await c.read()).setpoint_c == 55.0
                await c.close()
            finally:
                loop.remove_reader(master)
                back.cancel()
                writer.close()
                os.close(master)
                os.close(slave)

    run(body())


def test_settings_refuse_bad_addresses_and_a_serial_framing_without_port() -> None:
    with pytest.raises(ValueError, match="not host:port"):
        BinderSettings(address="10.0.0.7")
    with pytest.raises(ValueError, match="needs the serial port"):
        BinderSettings(framing="rtu")
    assert BinderSettings(address="10.0.0.7:10001").host_port() == ("10.0.0.7", 10001)


def test_concurrent_polls_are_serialised() -> None:
    async def body() -> None:
        async with BinderEmulator(model=BinderModel(family="MB2")) as emu:
            c = chamber(emu.port, controller="MB2", has_humidity=True)
            await c.open(RealClock())
            states = await asyncio.gather(*(c.read() for _ in range(8)))
            await c.close()
        assert all(s.setpoint_humidity_pct == pytest.approx(40.0) for s in states)

    run(body())


def test_the_emulator_answers_other_functions_with_illegal_function() -> None:
    async def body() -> None:
        async with BinderEmulator() as emu:
            client = AsyncModbusTcpClient("127.0.0.1", port=emu.port, framer=FramerType.RTU,
                                          timeout=1, retries=0)
            await client.connect()
            reply = await client.read_input_registers(0x11A9, count=2, device_id=1)
            coil = await client.write_coil(0x1A22, True, device_id=1)
            client.close()
        assert (reply.isError(), getattr(reply, "exception_code", None)) == (True, 1)
        assert (coil.isError(), getattr(coil, "exception_code", None)) == (True, 1)

    run(body())

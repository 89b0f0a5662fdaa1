"""The emulated instruments on their own: error queue, range limits, protection, pairs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from cellbench_scpi import plugin
from cellbench_scpi.commands import KEITHLEY_2400, SCPI_LOAD, SCPI_SUPPLY
from cellbench_scpi.emulator import (
    DATA_OUT_OF_RANGE,
    SETTINGS_CONFLICT,
    UNDEFINED_HEADER,
    EmulatedCell,
    EmulatedInstrument,
    Emulator,
)
from cellbench_sdk import DeviceConnectionError, RealClock
from cellbench_sdk.cell import CellParameters
from cellbench_sdk.testing import free_port


def _smu(speed: float = 1.0) -> EmulatedInstrument:
    return EmulatedInstrument(KEITHLEY_2400, EmulatedCell(speed=speed))


def test_the_error_queue_says_what_was_wrong_then_no_error() -> None:
    smu = _smu()
    assert smu.respond(":SOUR:CURR:LEVEL 1\n") is None
    assert smu.respond(":SOUR:CURR:RANG 0.105") is None
    assert smu.respond(":SOUR:CURR:LEV 0.5") is None  # beyond the 0.105 A range
    assert [smu.respond(":SYST:ERR?") for _ in range(3)] == [
        UNDEFINED_HEADER, DATA_OUT_OF_RANGE, '0,"No error"']
    assert smu.values["current"] == 0.0


def test_over_voltage_protection_switches_the_output_off_until_reset() -> None:
    clock = [0.0]
    cell = EmulatedCell(CellParameters(capacity_ah=0.1, initial_soc=0.9), speed=1.0,
                        clock=lambda: clock[0])
    smu = EmulatedInstrument(KEITHLEY_2400, cell)
    for line in (":SOUR:VOLT:PROT 4.1", ":SOUR:CURR:LEV 1", ":OUTP ON"):
        smu.respond(line)
    clock[0] += 120.0  # a 10C charge for two minutes: far beyond 4.1 V
    volts = float(smu.respond(":READ?").split(",")[0])  # type: ignore[union-attr]
    assert smu.tripped == "over-voltage" and not smu.output_on
    assert volts > 4.1
    assert smu.respond(":SYST:ERR?").startswith("-310")  # type: ignore[union-attr]
    smu.respond(":OUTP ON")
    assert not smu.output_on and smu.respond(":SYST:ERR?") == SETTINGS_CONFLICT
    smu.respond("*RST")
    smu.respond(":OUTP ON")
    assert smu.output_on


def test_a_pair_counts_the_moments_both_outputs_were_on() -> None:
    cell = EmulatedCell()
    supply = EmulatedInstrument(SCPI_SUPPLY, cell)
    load = EmulatedInstrument(SCPI_LOAD, cell)
    supply.respond("OUTP ON")
    load.respond("INP ON")
    assert cell.both_on >= 1


def test_the_emulator_serves_until_stopped_and_again_with_its_state() -> None:
    async def run() -> tuple[str, str]:
        async with Emulator.create("load") as emulator:
            port = emulator.ports[0]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"CURR 2\n*IDN?\n")
            idn = (await reader.readline()).decode()
            await emulator.stop()
            assert await reader.read() == b""  # dropped
            await emulator.start(ports=[port])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"CURR?\nCURR? MAX\n")
            reply = (await reader.readline()).decode()
            writer.close()
            assert emulator.instruments[0].values["current"] == 2.0  # kept across the drop
            return idn, reply

    idn, reply = asyncio.run(run())
    assert idn.startswith("RIGOL TECHNOLOGIES,DL3021")
    assert reply == "10.00 A\n"  # CURR? is not a command of the table: no reply to it


@pytest.mark.parametrize("name", ["scpi-smu", "scpi-bidirectional", "scpi-pair"])
def test_each_descriptor_names_an_emulator_its_driver_reaches(name: str) -> None:
    descriptor = next(d for d in plugin.cellbench_channel_drivers() if d.name == name)
    port = free_port(2)  # a pair listens on two
    resources: dict[str, object] = {"resource": f"TCPIP::127.0.0.1::{port}::SOCKET"}
    if name == "scpi-pair":
        resources = {"supply": {"resource": f"TCPIP::127.0.0.1::{port}::SOCKET"},
                     "load": {"resource": f"TCPIP::127.0.0.1::{port + 1}::SOCKET"}}

    async def run() -> str:
        serving = asyncio.create_task(descriptor.load_emulator()("127.0.0.1", port, speed=2.0))
        try:
            driver = descriptor.load()(descriptor.settings.model_validate(resources))
            for _ in range(100):  # until it listens
                try:
                    await driver.open(RealClock())
                    break
                except DeviceConnectionError:
                    await asyncio.sleep(0.02)
            info: str = driver.channels[0].name
            await driver.close()
            return info
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving

    assert asyncio.run(run()).startswith(f"{name}@TCPIP::127.0.0.1::{port}::SOCKET")

"""The smart battery against the register model behind the bus interface: the contract,
decoded values, PEC errors, NACKs, absurd block lengths, capacity modes and cells."""

from __future__ import annotations

import asyncio
import math
from typing import Any, ClassVar

import pytest

from cellbench_sdk import DeviceClosed, DeviceError, NotSupported, OutOfRange, RealClock
from cellbench_sdk.testing import OsiDeviceContract, check_osi_device
from cellbench_smartbattery import sbs
from cellbench_smartbattery.battery import SmartBattery
from cellbench_smartbattery.model import ModelBus, SbsBattery
from cellbench_smartbattery.settings import SmartBatterySettings


class TestSmartBattery(OsiDeviceContract):
    """Every check of an OSI device on the emulated bus; a Linux adapter that is not there fails
    to open."""

    plugin = "cellbench_smartbattery.plugin"
    name = "smartbattery"
    entry_point = "smartbattery"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "emulated": {"bus": "emulated", "retry_delay_s": 0},
        "two cells": {"bus": "emulated", "cells": 2},
        "no pec": {"bus": "emulated", "pec": False},
    }
    values: ClassVar[dict[str, float]] = {"remaining_capacity_alarm": 0.25}

    def unreachable(self, port: int) -> dict[str, Any]:
        return {"bus": "smbus2", "i2c_bus": f"/dev/i2c-{port}"}


def battery_on(model: SbsBattery, **settings: Any) -> SmartBattery:
    return SmartBattery(SmartBatterySettings(bus="emulated", retry_delay_s=0, **settings),
                        bus=ModelBus(model))


async def opened(model: SbsBattery, **settings: Any) -> SmartBattery:
    battery = battery_on(model, **settings)
    await battery.open(RealClock())
    return battery


def test_values_are_decoded_to_si_units() -> None:
    model = SbsBattery(charge_ah=1.45, capacity_ah=2.9, current_a=-1.2, temperature_c=31.5)
    model.status_alarms = 0x4000 | 0x0100 | 0x0003

    async def run() -> dict[str, float]:
        battery = await opened(model)
        readings = await battery.read()
        await battery.close()
        return {name: reading.value for name, reading in readings.items()}

    values = asyncio.run(run())
    cells = [values[f"cell{n}_voltage"] for n in range(1, 5)]
    assert cells == pytest.approx([model.cell_voltage_v(n) for n in range(4)], abs=0.001)
    assert values["voltage"] == pytest.approx(sum(cells), abs=0.002)
    assert values["current"] == values["average_current"] == pytest.approx(-1.2)
    assert values["temperature"] == pytest.approx(31.5, abs=0.051)  # 0.1 K resolution
    assert values["relative_soc"] == 50.0
    assert values["remaining_capacity"] == pytest.approx(1.45, abs=0.002)
    assert values["full_charge_capacity"] == pytest.approx(2.9)
    assert values["cycle_count"] == 42.0
    assert values["alarm_terminate_charge"] == values["alarm_remaining_time"] == 1.0
    assert values["alarm_over_charged"] == values["alarm_over_temp"] == 0.0
    assert values["status_initialized"] == values["status_discharging"] == 1.0
    assert values["status_error_code"] == 3.0
    assert values["remaining_capacity_alarm"] == pytest.approx(0.3)


def test_identity_is_read_at_open() -> None:
    async def run() -> dict[str, str]:
        battery = await opened(SbsBattery())
        info = dict(battery.info)
        await battery.close()
        return info

    assert asyncio.run(run()) == {
        "manufacturer": "cellbench", "device_name": "SBS-MODEL-4S", "chemistry": "LION",
        "serial_number": str(0x1234), "manufacture_date": "2024-03-15",
        "design_capacity": "2.9 Ah", "design_voltage": "14.4 V", "specification_info": "0x0031"}


def test_pec_errors_and_nacks_are_retried() -> None:
    model = SbsBattery()

    async def run() -> float:
        battery = await opened(model, retries=4)
        # Four failures in a row on the first register, then all is well.
        model.faults.bad_pec, model.faults.nacks, model.faults.bus_errors = 1, 2, 1
        readings = await battery.read()
        assert battery.client.retried == 4
        await battery.close()
        return readings["relative_soc"].value

    assert asyncio.run(run()) == round(model.soc() * 100)
    assert model.faults.bad_pec == model.faults.nacks == model.faults.bus_errors == 0


@pytest.mark.parametrize(("fault", "expected"), [
    ("bad_pec", r"read word 0x[0-9A-F]{2} failed 3 times; last: 0x[0-9A-F]{2}: PEC 0x"),
    ("nacks", r"read word 0x[0-9A-F]{2} failed 3 times; last: NACK: the gauge is busy"),
    ("bus_errors", r"failed 3 times; last: bus error: arbitration lost"),
])
def test_a_lasting_fault_is_a_device_error_after_the_retries(fault: str, expected: str) -> None:
    model = SbsBattery()

    async def run() -> None:
        battery = await opened(model, retries=2)
        setattr(model.faults, fault, 3)
        try:
            with pytest.raises(DeviceError, match=expected) as raised:
                await battery.read()
            assert raised.value.device == battery.name
            setattr(model.faults, fault, 0)
            assert math.isfinite((await battery.read())["voltage"].value)  # it recovers
        finally:
            await battery.close()

    asyncio.run(run())


def test_a_wrong_pec_is_never_taken_as_a_value() -> None:
    model = SbsBattery()

    async def run() -> None:
        battery = await opened(model, retries=0)
        model.faults.bad_pec = 1
        with pytest.raises(DeviceError, match="PEC"):
            await battery.read()
        await battery.close()

    asyncio.run(run())


def test_an_absurd_block_length_is_refused_and_open_fails_cleanly() -> None:
    model = SbsBattery()
    model.faults.block_length = 200
    battery = battery_on(model, retries=1)

    async def run() -> None:
        with pytest.raises(DeviceError, match=r"block read 0x20 failed 2 times; last: block "
                                              r"read 0x20 announced 200 bytes; a block has at "
                                              r"most 32"):
            await battery.open(RealClock())
        with pytest.raises(DeviceClosed):
            await battery.read()
        await battery.close()

    asyncio.run(run())


def test_a_block_that_is_not_text_is_refused() -> None:
    model = SbsBattery()
    model.strings[sbs.DEVICE_NAME] = b"SBS\x07BEL"

    async def run() -> None:
        with pytest.raises(DeviceError, match=r"block 0x21 is not printable ASCII"):
            await opened(model)

    asyncio.run(run())


def test_scaled_gauges_and_a_reserved_scale() -> None:
    model = SbsBattery(current_a=-12.0)
    model.specification_info = 0x1131  # VScale 10, IPScale 10: a big pack's gauge

    async def run() -> tuple[float, float]:
        battery = await opened(model)
        readings = await battery.read()
        await battery.close()
        return readings["current"].value, readings["voltage"].value

    current, voltage = asyncio.run(run())
    # The model reports raw mA and mV; the gauge says each count is ten of them.
    assert current == pytest.approx(-120.0)
    assert voltage == pytest.approx(10 * sum(model.cell_voltage_v(n) for n in range(4)),
                                    abs=0.03)
    model.specification_info = 0x4031
    with pytest.raises(DeviceError, match=r"SpecificationInfo 0x4031 has a reserved scale"):
        asyncio.run(opened(model))


def test_cells_the_gauge_lacks_are_not_offered() -> None:
    async def run() -> tuple[list[str], set[str]]:
        battery = await opened(SbsBattery(cells=2))
        names = [s.name for s in battery.signals if s.name.startswith("cell")]
        readings = await battery.read()
        await battery.close()
        return names, {n for n in readings if n.startswith("cell")}

    names, read = asyncio.run(run())
    assert names == ["cell1_voltage", "cell2_voltage"]
    assert read == set(names)


def test_capacity_mode_reports_watt_hours() -> None:
    model = SbsBattery(capacity_mode_wh=True, charge_ah=2.9, capacity_ah=2.9, current_a=0.0)

    async def run() -> tuple[dict[str, str], float]:
        battery = await opened(model)
        units = {s.name: s.unit for s in battery.signals}
        readings = await battery.read()
        await battery.close()
        return units, readings["full_charge_capacity"].value

    units, full = asyncio.run(run())
    assert units["remaining_capacity"] == units["full_charge_capacity"] == "Wh"
    assert full == pytest.approx(2.9 * sum(model.cell_voltage_v(n) for n in range(4)), abs=0.01)


def test_the_alarm_is_written_with_its_pec_and_checked() -> None:
    model = SbsBattery()

    async def run() -> None:
        battery = await opened(model)
        try:
            await battery.write("remaining_capacity_alarm", 0.5)
            assert model.remaining_capacity_alarm == 500
            assert (await battery.read())["remaining_capacity_alarm"].value == 0.5
            with pytest.raises(OutOfRange, match=r"outside 0\.\.65\.535"):
                await battery.write("remaining_capacity_alarm", 70.0)
            with pytest.raises(OutOfRange):
                await battery.write("remaining_capacity_alarm", math.inf)
            with pytest.raises(NotSupported, match="voltage is read-only"):
                await battery.write("voltage", 1.0)
        finally:
            await battery.close()

    asyncio.run(run())


def test_the_model_refuses_a_write_with_a_wrong_pec() -> None:
    model = SbsBattery()
    written = bytes([sbs.REMAINING_CAPACITY_ALARM, 0x10, 0x00])
    good = sbs.pec(bytes([sbs.write_address(model.address)]) + written)
    ModelBus(model).write(model.address, written + bytes([good]))
    assert model.remaining_capacity_alarm == 0x10
    with pytest.raises(Exception, match="wrong PEC"):
        ModelBus(model).write(model.address, bytes([sbs.REMAINING_CAPACITY_ALARM, 0x20, 0,
                                                    good]))
    assert model.remaining_capacity_alarm == 0x10


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="cells 3 needs as many cell_commands"):
        SmartBatterySettings(cells=3, cell_commands=(0x3F,))
    with pytest.raises(ValueError, match="must be a number or a /dev/ path"):
        SmartBatterySettings(i2c_bus="i2c-1")
    with pytest.raises(ValueError, match="cell_commands"):
        SmartBatterySettings(cell_commands=(0x3F, 300))
    with pytest.raises(ValueError, match="address"):
        SmartBatterySettings(address=0x80)


def test_values_are_checked_directly() -> None:
    asyncio.run(check_osi_device(battery_on(SbsBattery(cells=0)),
                                 values={"remaining_capacity_alarm": 0.1}))

"""The simulated OSI device."""

from __future__ import annotations

import asyncio
import math

import pytest

from cellbench_sdk import DeviceConnectionError, NotSupported, OutOfRange, VirtualClock
from cellbench_sim.osi import SimOsiDevice, SimOsiSettings


def test_signals_follow_the_clock_and_the_heater() -> None:
    settings = SimOsiSettings(temperature_period_s=400.0, thermal_resistance_k_per_w=0.5)
    device = SimOsiDevice(settings)
    assert {(s.name, s.unit, s.writable) for s in device.signals} == {
        ("temperature_c", "°C", False),
        ("heater_power_w", "W", True),
        ("pressure_kpa", "kPa", False),
    }
    clock = VirtualClock()
    asyncio.run(device.open(clock))
    asyncio.run(clock.sleep_until(100.0))  # a quarter period: the sine at its top
    readings = asyncio.run(device.read())
    assert set(readings) == {"temperature_c", "heater_power_w", "pressure_kpa"}
    assert all(r.time_s == 100.0 for r in readings.values())
    assert readings["temperature_c"].value == pytest.approx(25.0 + 2.0)
    pressure = 101.325 + 0.5 * math.sin(2 * math.pi * 100.0 / 86400.0)
    assert readings["pressure_kpa"].value == pytest.approx(pressure)
    asyncio.run(device.write("heater_power_w", 10.0))
    readings = asyncio.run(device.read())
    assert readings["heater_power_w"].value == 10.0
    assert readings["temperature_c"].value == pytest.approx(25.0 + 2.0 + 5.0)


def test_writes_are_checked() -> None:
    device = SimOsiDevice()
    with pytest.raises(DeviceConnectionError, match="not open"):
        asyncio.run(device.read())
    asyncio.run(device.open(VirtualClock()))
    with pytest.raises(NotSupported, match="'temperature_c' is read-only"):
        asyncio.run(device.write("temperature_c", 30.0))
    with pytest.raises(OutOfRange, match=r"no signal 'flux'.*heater_power_w"):
        asyncio.run(device.write("flux", 1.0))
    for bad in (-1.0, 51.0, float("nan")):
        with pytest.raises(OutOfRange, match="heater_power_w must be"):
            asyncio.run(device.write("heater_power_w", bad))
    asyncio.run(device.close())
    asyncio.run(device.close())
    with pytest.raises(DeviceConnectionError):
        asyncio.run(device.write("heater_power_w", 1.0))

"""The simulated climate chamber."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from pydantic import ValidationError

from cellbench_sdk import (
    ChamberState,
    DeviceConnectionError,
    NotSupported,
    OutOfRange,
    VirtualClock,
)
from cellbench_sim.chamber import SimChamber, SimChamberSettings, SimHumidityChamber, create_chamber


def do(call: Coroutine[Any, Any, object]) -> None:
    asyncio.run(call)


def read_after(chamber: SimChamber, clock: VirtualClock, seconds: float) -> ChamberState:
    asyncio.run(clock.sleep_until(clock.now() + seconds))
    return asyncio.run(chamber.read())


def opened(chamber: SimChamber) -> VirtualClock:
    clock = VirtualClock()
    do(chamber.open(clock))
    return clock


def test_ramps_then_settles_at_the_setpoint_and_drifts_back_when_stopped() -> None:
    chamber = SimChamber(SimChamberSettings(time_constant_s=300.0, max_ramp_k_per_min=3.0))
    clock = opened(chamber)
    do(chamber.set_temperature(60.0))
    assert read_after(chamber, clock, 600.0).temperature_c == 25.0  # not started yet
    do(chamber.start())
    state = read_after(chamber, clock, 300.0)
    assert state.temperature_c == pytest.approx(25.0 + 3.0 * 5.0)  # ramp-limited: 3 K/min
    assert (state.setpoint_c, state.running, state.time_s) == (60.0, True, 900.0)
    assert read_after(chamber, clock, 3600.0).temperature_c == pytest.approx(60.0, abs=0.01)
    do(chamber.stop())
    state = read_after(chamber, clock, 7200.0)
    assert state.temperature_c == pytest.approx(25.0, abs=0.01)
    assert not state.running


def test_approach_is_first_order_near_the_setpoint() -> None:
    chamber = SimChamber(SimChamberSettings(time_constant_s=100.0, max_ramp_k_per_min=60.0))
    clock = opened(chamber)
    do(chamber.start())
    do(chamber.set_temperature(30.0))  # a 5 K gap is within the ramp limit (1 K/s · 100 s)
    first = read_after(chamber, clock, 100.0).temperature_c
    second = read_after(chamber, clock, 100.0).temperature_c
    assert 30.0 - first == pytest.approx(5.0 * 0.36788, rel=1e-4)
    assert 30.0 - second == pytest.approx(5.0 * 0.36788**2, rel=1e-4)


def test_setpoints_and_lifecycle_are_checked() -> None:
    chamber = SimChamber()
    with pytest.raises(DeviceConnectionError, match="not open"):
        do(chamber.read())
    with pytest.raises(DeviceConnectionError):
        do(chamber.set_temperature(40.0))
    opened(chamber)
    for bad in (151.0, -41.0, float("nan")):
        with pytest.raises(OutOfRange, match="temperature setpoint"):
            do(chamber.set_temperature(bad))
    with pytest.raises(NotSupported):
        do(chamber.set_humidity(50.0))
    assert asyncio.run(chamber.read()).humidity_pct is None
    do(chamber.close())
    do(chamber.close())
    with pytest.raises(DeviceConnectionError):
        do(chamber.start())


def test_humidity_chamber_from_the_settings() -> None:
    settings = SimChamberSettings(has_humidity=True, humidity_time_constant_s=60.0)
    chamber = create_chamber(settings)
    assert isinstance(chamber, SimHumidityChamber) and chamber.has_humidity
    assert not create_chamber(SimChamberSettings()).has_humidity
    clock = opened(chamber)
    do(chamber.start())
    do(chamber.set_humidity(80.0))
    state = read_after(chamber, clock, 600.0)
    assert state.humidity_pct == pytest.approx(80.0, abs=0.01)
    assert state.setpoint_humidity_pct == 80.0
    with pytest.raises(OutOfRange, match="humidity setpoint"):
        do(chamber.set_humidity(101.0))
    with pytest.raises(ValueError, match="no humidity control"):
        SimChamber(settings)


def test_settings_are_validated() -> None:
    for bad in (
        {"time_constant_s": 0.0},
        {"max_ramp_k_per_min": float("inf")},
        {"temperature_min_c": 50.0, "temperature_max_c": 20.0},
        {"humidity": True},
    ):
        with pytest.raises(ValidationError):
            SimChamberSettings.model_validate(bad)

"""The simulated channel bank honours the channel-driver contract."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from cellbench_sdk import (
    REST,
    DeviceConnectionError,
    OutOfRange,
    SampleBatch,
    Step,
    StepMode,
    VirtualClock,
)
from cellbench_sim.channel import SimChannels, SimChannelSettings


def make(count: int = 4, **settings: float | str) -> SimChannels:
    """A bank of nominal cells without spread."""
    values: dict[str, float | str] = {
        "count": count,
        "capacity_spread": 0.0,
        "resistance_spread": 0.0,
    }
    return SimChannels(SimChannelSettings.model_validate(values | settings))


def opened(driver: SimChannels) -> VirtualClock:
    clock = VirtualClock()
    asyncio.run(driver.open(clock))
    return clock


def later(clock: VirtualClock, seconds: float) -> None:
    asyncio.run(clock.sleep_until(clock.now() + seconds))


def do(call: Coroutine[Any, Any, object]) -> None:
    asyncio.run(call)


def measure(driver: SimChannels) -> SampleBatch:
    return asyncio.run(driver.measure())


def test_settings_are_validated() -> None:
    for bad in (
        {"count": 0},
        {"current_max_a": float("inf")},
        {"voltage_min_v": 5.0, "voltage_max_v": 4.0},
        {"chemistry": "lead-acid"},
        {"colour": "blue"},
    ):
        with pytest.raises(ValidationError):
            SimChannelSettings.model_validate(bad)


def test_channels_describe_the_output_ranges() -> None:
    driver = make(3, current_max_a=6.0, voltage_max_v=4.5, power_max_w=20.0)
    assert len(driver.channels) == 3
    info = driver.channels[2]
    assert (info.name, info.voltage_min_v, info.voltage_max_v) == ("sim/2", 0.0, 4.5)
    assert (info.current_max_a, info.power_max_w) == (6.0, 20.0)


def test_calls_before_open_fail() -> None:
    driver = make()
    for call in (driver.measure(), driver.apply(0, REST), driver.output_off(0)):
        with pytest.raises(DeviceConnectionError, match="not open"):
            do(call)


def test_unknown_channels_and_steps_beyond_the_ranges_are_refused() -> None:
    driver = make(4)
    opened(driver)
    for channel in (4, -1):
        with pytest.raises(OutOfRange, match=f"no channel {channel}"):
            do(driver.apply(channel, REST))
    for step, what in (
        (Step(StepMode.CC, current_a=-10.5), "current"),
        (Step(StepMode.CV, voltage_v=5.5), "voltage"),
        (Step(StepMode.CCCV, current_a=1.0, voltage_v=-0.1), "voltage"),
        (Step(StepMode.CP, power_w=-60.0), "power"),
    ):
        with pytest.raises(OutOfRange, match=f"channel 1, {step.mode.value} step: {what}"):
            do(driver.apply(1, step))
    with pytest.raises(OutOfRange, match="no channel 9"):
        driver.set_ambient(9, 30.0)
    with pytest.raises(OutOfRange, match="ambient"):
        driver.set_ambient(0, float("nan"))


def test_measure_returns_one_row_per_channel_and_the_state_when_no_time_passed() -> None:
    driver = make(5, initial_soc=0.5)
    clock = opened(driver)
    do(driver.apply(0, Step(StepMode.CC, current_a=2.5)))
    later(clock, 10.0)
    first = measure(driver)
    again = measure(driver)
    assert len(first) == 5
    assert np.array_equal(first.channel, np.arange(5))
    assert np.all(first.time_s == 10.0)
    for column in ("voltage_v", "current_a", "temperature_c"):
        assert np.array_equal(getattr(first, column), getattr(again, column))
    assert first.current_a[0] == 2.5
    assert np.all(first.current_a[1:] == 0.0)
    assert first.voltage_v[0] > first.voltage_v[1]


def test_batches_keep_their_values() -> None:
    driver = make(2)
    clock = opened(driver)
    do(driver.apply(0, Step(StepMode.CC, current_a=-2.5)))
    later(clock, 1.0)
    first = measure(driver)
    kept = first.voltage_v.copy()
    later(clock, 100.0)
    do(driver.apply(0, Step(StepMode.CC, current_a=2.5)))
    measure(driver)
    assert np.array_equal(first.voltage_v, kept)


def test_a_step_takes_effect_when_it_is_applied() -> None:
    driver = make(3, initial_soc=0.5, ageing="none")  # capacity stays: SOC counts the charge
    clock = opened(driver)
    measure(driver)
    later(clock, 100.0)
    do(driver.apply(0, Step(StepMode.CC, current_a=-2.5)))  # between two measurements
    later(clock, 200.0)
    do(driver.apply(0, REST))
    do(driver.apply(1, Step(StepMode.CC, current_a=-2.5)))
    later(clock, 100.0)
    measure(driver)
    later(clock, 50.0)
    measure(driver)
    soc_per_as = 1.0 / (2.5 * 3600.0)
    assert driver.cells.soc == pytest.approx(
        [0.5 - 500.0 * soc_per_as, 0.5 - 375.0 * soc_per_as, 0.5]
    )


def test_ambient_drives_the_cell_temperature() -> None:
    driver = make(2)
    clock = opened(driver)
    driver.set_ambient(1, 45.0)
    later(clock, 20_000.0)
    batch = measure(driver)
    assert batch.temperature_c == pytest.approx([25.0, 45.0], abs=0.01)


def test_close_switches_outputs_off_and_is_idempotent() -> None:
    driver = make(2)
    clock = opened(driver)
    do(driver.apply(0, Step(StepMode.CC, current_a=-2.5)))
    later(clock, 10.0)
    do(driver.close())
    do(driver.close())
    with pytest.raises(DeviceConnectionError):
        measure(driver)
    assert driver.cells.soc[0] == pytest.approx(0.5 - 25.0 / 9000.0)
    do(driver.open(clock))
    later(clock, 10.0)
    assert np.all(measure(driver).current_a == 0.0)


def test_output_off_rests_the_channel() -> None:
    driver = make(1)
    clock = opened(driver)
    do(driver.apply(0, Step(StepMode.CV, voltage_v=4.2)))
    later(clock, 1.0)
    assert measure(driver).current_a[0] == 10.0  # a CV step without limit: the channel's range
    do(driver.output_off(0))
    later(clock, 1.0)
    assert measure(driver).current_a[0] == 0.0

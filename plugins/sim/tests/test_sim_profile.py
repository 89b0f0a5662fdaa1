"""Profile steps on the simulated channels: the charge a profile passes is its integral, whether
the bank is measured on a grid or a channel is caught up alone when its step changes."""

from __future__ import annotations

import asyncio

import pytest

from cellbench_sdk import (
    REST,
    OutOfRange,
    Profile,
    ProfileQuantity,
    Step,
    StepMode,
    VirtualClock,
)
from cellbench_sim.channel import SimChannels, SimChannelSettings

PULSES = Profile(ProfileQuantity.CURRENT, (0.0, 4.0, 6.0), (-2.0, -1.0, -3.0), hold=True)


def test_profiles_pass_their_integral_of_current() -> None:
    # Without ageing the capacity stays, so the change of SOC counts the charge.
    driver = SimChannels(SimChannelSettings(count=3, capacity_spread=0.0, resistance_spread=0.0,
                                            ageing="none"))
    clock = VirtualClock()

    async def main() -> None:
        await driver.open(clock)
        await driver.apply(0, Step(StepMode.PROFILE, profile=PULSES))
        await driver.apply(1, Step(StepMode.PROFILE, profile=PULSES))
        await clock.sleep_until(5.0)
        await driver.apply(2, Step(StepMode.PROFILE, profile=PULSES))  # starts 5 s later
        batch = await driver.measure()
        assert batch.current_a[:2] == pytest.approx([(-2 * 4 - 1) / 5] * 2)
        await clock.sleep_until(7.0)
        await driver.apply(1, REST)  # channel 1 is caught up alone, under its profile
        await clock.sleep_until(10.0)
        await driver.measure()
        await driver.close()

    soc0 = driver.cells.soc.copy()
    asyncio.run(main())
    charge_as = (driver.cells.soc - soc0) * driver.cells.capacity_ah * 3600
    assert charge_as == pytest.approx([-2 * 4 - 1 * 2 - 3 * 4, -2 * 4 - 1 * 2 - 3 * 1,
                                       -2 * 4 - 1 * 1])


def test_a_voltage_profile_is_held_like_cv_and_profiles_beyond_the_range_are_refused() -> None:
    driver = SimChannels(SimChannelSettings(count=1, current_max_a=5.0))
    clock = VirtualClock()
    ramp = Profile(ProfileQuantity.VOLTAGE, (0.0, 100.0), (3.7, 3.8))

    async def main() -> float:
        await driver.open(clock)
        with pytest.raises(OutOfRange, match="current -6.0 A is beyond"):
            await driver.apply(0, Step(StepMode.PROFILE, profile=Profile(
                ProfileQuantity.CURRENT, (0.0, 1.0), (1.0, -6.0))))
        with pytest.raises(OutOfRange, match="voltage 6.0 V is outside"):
            await driver.apply(0, Step(StepMode.PROFILE, profile=Profile(
                ProfileQuantity.VOLTAGE, (0.0, 1.0), (4.0, 6.0))))
        await driver.apply(0, Step(StepMode.PROFILE, current_a=5.0, profile=ramp))
        await clock.sleep_until(50.0)
        batch = await driver.measure()
        await driver.close()
        return float(batch.voltage_v[0])

    assert asyncio.run(main()) == pytest.approx(3.75, abs=1e-4)

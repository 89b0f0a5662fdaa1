"""step_beyond: the one check of a step against a channel's ranges that drivers share."""

from __future__ import annotations

import math

import pytest

from cellbench_hal import ChannelInfo, Profile, ProfileQuantity, Step, StepMode, step_beyond

RANGES = ChannelInfo("ch1", voltage_min_v=2.0, voltage_max_v=4.5, current_max_a=5.0,
                     power_max_w=20.0)


@pytest.mark.parametrize(("step", "problem"), [
    (Step(StepMode.CC, current_a=-6.0), "current -6.0 A is beyond ±5.0 A"),
    (Step(StepMode.CV, voltage_v=4.6), "voltage 4.6 V is outside 2.0..4.5 V"),
    (Step(StepMode.CV, voltage_v=4.0, current_a=5.5), "current 5.5 A is beyond ±5.0 A"),
    (Step(StepMode.CCCV, current_a=1.0, voltage_v=1.9), "voltage 1.9 V is outside 2.0..4.5 V"),
    (Step(StepMode.CP, power_w=-25.0), "power -25.0 W is beyond ±20.0 W"),
    (Step(StepMode.PROFILE, profile=Profile(ProfileQuantity.CURRENT, (0.0, 1.0), (1.0, -7.0))),
     "current -7.0 A is beyond ±5.0 A"),
    (Step(StepMode.PROFILE, profile=Profile(ProfileQuantity.VOLTAGE, (0.0, 1.0), (1.5, 3.0))),
     "voltage 1.5 V is outside 2.0..4.5 V"),
    (Step(StepMode.PROFILE, profile=Profile(ProfileQuantity.POWER, (0.0, 1.0), (0.0, 21.0))),
     "power 21.0 W is beyond ±20.0 W"),
])
def test_what_lies_beyond_is_named(step: Step, problem: str) -> None:
    assert step_beyond(step, RANGES) == problem


@pytest.mark.parametrize("step", [
    Step(StepMode.REST), Step(StepMode.CC, current_a=5.0), Step(StepMode.CR, resistance_ohm=0.1),
    Step(StepMode.CCCV, current_a=-5.0, voltage_v=2.0), Step(StepMode.CP, power_w=20.0)])
def test_steps_within_the_ranges_pass(step: Step) -> None:
    assert step_beyond(step, RANGES) == ""


def test_unlimited_power() -> None:
    unlimited = ChannelInfo("ch1", 0.0, 5.0, 5.0, power_max_w=math.inf)
    assert step_beyond(Step(StepMode.CP, power_w=1e6), unlimited) == ""

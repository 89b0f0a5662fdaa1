"""Profiles: the setpoint over step time, its means over intervals, and what a profile refuses."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench_hal import Profile, ProfileQuantity, Step, StepMode

CURRENT = ProfileQuantity.CURRENT


def test_a_linear_profile_interpolates_and_holds_its_last_value() -> None:
    ramp = Profile(CURRENT, (0.0, 10.0), (0.0, 2.0))
    assert ramp.duration_s == 10.0
    assert ramp.at(np.array([0.0, 5.0, 10.0, 20.0])).tolist() == [0.0, 1.0, 2.0, 2.0]
    means = ramp.mean(np.array([0.0, 0.0, 10.0, 5.0]), np.array([10.0, 20.0, 20.0, 5.0]))
    assert means.tolist() == [1.0, 1.5, 2.0, 1.0]  # an empty interval: the value there


def test_a_held_profile_steps_from_value_to_value() -> None:
    pulses = Profile(CURRENT, (0.0, 10.0, 20.0), (1.0, -1.0, 3.0), hold=True)
    assert pulses.at(np.array([0.0, 9.9, 10.0, 15.0, 25.0])).tolist() == [1, 1, -1, -1, 3]
    # The mean is the charge passed over the interval divided by its length.
    assert pulses.mean(np.array([0.0, 5.0, 0.0]), np.array([20.0, 15.0, 30.0])).tolist() == [
        0.0, 0.0, 1.0]


@pytest.mark.parametrize(("times", "values", "message"), [
    ((), (), "at least one"),
    ((0.0, 1.0), (1.0,), "as many values as times"),
    ((1.0, 2.0), (1.0, 1.0), "start at 0 and rise"),
    ((0.0, 2.0, 2.0), (1.0, 1.0, 1.0), "start at 0 and rise"),
    ((0.0, 1.0), (1.0, float("nan")), "finite"),
])
def test_bad_profiles_are_refused(times: tuple[float, ...], values: tuple[float, ...],
                                  message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Profile(CURRENT, times, values)


def test_a_profile_step_needs_its_profile() -> None:
    with pytest.raises(ValueError, match="a profile step needs profile"):
        Step(StepMode.PROFILE)
    voltage = Profile(ProfileQuantity.VOLTAGE, (0.0,), (4.0,))
    with pytest.raises(ValueError, match="current limit"):
        Step(StepMode.PROFILE, current_a=-1.0, profile=voltage)

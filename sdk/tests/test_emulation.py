"""The emulators' shared model time and thermal approach."""

from __future__ import annotations

import math

import pytest

from cellbench_sdk.emulation import ModelTime, approach


def test_without_a_rate_limit_the_approach_is_first_order() -> None:
    assert approach(0.0, 1.0, 100.0, 100.0) == pytest.approx(1 - math.exp(-1))
    assert approach(40.0, 25.0, 300.0, 100.0) == pytest.approx(25.0 + 15.0 * math.exp(-3))


def test_a_wide_gap_ramps_at_the_limit_then_approaches() -> None:
    # 6 K/min with tau 100 s: the limit holds while the gap is wider than 10 K
    assert approach(25.0, 85.0, 60.0, 100.0, 0.1) == pytest.approx(31.0)
    assert approach(85.0, 25.0, 60.0, 100.0, 0.1) == pytest.approx(79.0)
    # 500 s of ramp close the gap to 10 K; the rest is the exponential
    assert approach(25.0, 85.0, 600.0, 100.0, 0.1) == pytest.approx(85.0 - 10.0 * math.exp(-1))


def test_steps_add_up_to_one_long_step() -> None:
    value = 25.0
    for _ in range(600):
        value = approach(value, 85.0, 1.0, 100.0, 0.1)
    assert value == pytest.approx(approach(25.0, 85.0, 600.0, 100.0, 0.1), abs=1e-9)


def test_no_time_changes_nothing() -> None:
    assert approach(30.0, 85.0, 0.0, 100.0, 0.1) == 30.0
    assert approach(30.0, 85.0, -5.0, 100.0, 0.1) == 30.0


def test_model_time_runs_speed_times_faster_than_its_clock() -> None:
    wall = [10.0]
    time = ModelTime(50.0, clock=lambda: wall[0])
    wall[0] = 12.0
    assert time.elapsed() == 100.0
    assert time.elapsed() == 0.0
    wall[0] = 11.0  # a clock that went back gives no time
    assert time.elapsed() == 0.0
    wall[0] = 20.0
    time.restart()
    wall[0] = 21.0
    assert time.elapsed() == 50.0


@pytest.mark.parametrize("speed", [0.0, -1.0, math.inf, math.nan])
def test_a_speed_that_is_not_a_positive_number_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be a positive number"):
        ModelTime(speed)

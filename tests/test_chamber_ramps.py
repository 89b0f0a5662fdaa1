"""A chamber step may ramp the temperature (``ramp: 1 K/min``): in the controller where it can
ramp, else by the station setting a moving setpoint every sample period; the step is stable
only once the ramp has reached its setpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import TestStatus
from cellbench_core.plan import PlanError, dump_plan, parse_plan
from cellbench_core.runner import ChannelRef, TestRequest
from cellbench_core.storage import open_database
from cellbench_core.storage.reading import read_sample_chunk
from cellbench_hal import ClimateChamber, VirtualClock
from cellbench_sim.chamber import SimChamber, SimChamberSettings
from cellbench_sim.channel import SimChannels, SimChannelSettings

PERIOD_S = 10.0
PLAN = """\
name: ramp to 45 °C
steps:
  - chamber: 45 °C
    ramp: 1 K/min
    within: 1 K
    stable: 5 min
    timeout: 3 h
  - Rest for 10 min
"""


class RecordingChamber(SimChamber):
    """The simulated chamber (ambient 25 °C, fast enough to follow 1 K/min), noting every
    setpoint and ramp it is given with the clock time."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(SimChamberSettings(ambient_c=25.0, time_constant_s=60.0,
                                            max_ramp_k_per_min=5.0))
        self.clock = clock
        self.setpoints: list[tuple[float, float]] = []
        self.ramps: list[tuple[float, float]] = []

    async def set_temperature(self, celsius: float) -> None:
        self.setpoints.append((self.clock.now(), celsius))
        await super().set_temperature(celsius)

    async def ramp_temperature(self, celsius: float, kelvin_per_s: float) -> None:
        self.ramps.append((celsius, kelvin_per_s))
        await super().ramp_temperature(celsius, kelvin_per_s)


class SteppedChamber(RecordingChamber):
    """A controller that cannot ramp: the station steps its setpoint."""

    ramp_temperature = ClimateChamber.ramp_temperature


def run(tmp_path: Path, run_requests: Any, chamber_type: type[RecordingChamber]) -> tuple[
        RecordingChamber, Any, Any]:
    db = open_database(f"sqlite:///{tmp_path / 'ramp.db'}")
    clock = VirtualClock()
    chamber = chamber_type(clock)
    request = TestRequest(ChannelRef(1, SimChannels(SimChannelSettings(count=1)), "sim", 0),
                          parse_plan(PLAN, "plan.yaml"), chamber=chamber, chamber_name="oven")
    [outcome], _ = run_requests(db, clock, [request], sample_period_s=PERIOD_S)
    assert outcome.status is TestStatus.FINISHED, outcome
    return chamber, db, outcome


def test_a_controller_that_cannot_ramp_gets_a_moving_setpoint(
        tmp_path: Path, run_requests: Any) -> None:
    chamber, db, outcome = run(tmp_path, run_requests, SteppedChamber)
    times = np.array([t for t, _ in chamber.setpoints])
    setpoints = np.array([c for _, c in chamber.setpoints])
    assert setpoints[0] == pytest.approx(25.0) and setpoints[-1] == 45.0
    assert np.all(np.diff(setpoints) > 0)  # rising, never past the setpoint
    # One kelvin a minute from where the chamber was, in steps of a sample period
    elapsed = times - times[0]
    assert np.allclose(setpoints[:-1], 25.0 + elapsed[:-1] / 60.0, atol=1e-9)
    assert 20 * 60 - PERIOD_S <= elapsed[-1] <= 20 * 60 + PERIOD_S
    # Stable only once the ramp reached 45 °C: then 5 minutes within 1 K
    chamber_step = db.steps(outcome.test_id)[0]
    assert chamber_step.end_reason == "chamber stable"
    assert chamber_step.end_test_time_s - chamber_step.start_test_time_s >= 25 * 60


def test_a_controller_that_ramps_is_given_the_ramp_once(
        tmp_path: Path, run_requests: Any) -> None:
    chamber, db, outcome = run(tmp_path, run_requests, RecordingChamber)
    [(celsius, rate)] = chamber.ramps
    assert celsius == 45.0 and rate == pytest.approx(1 / 60)
    assert [c for _, c in chamber.setpoints] == [45.0]  # ramp_temperature checks the setpoint
    chunk = read_sample_chunk(db, outcome.test_id, limit=100_000)
    t, temperature = chunk.columns["test_time_s"], chunk.aux["oven.temperature"]
    # The chamber follows the ramp, at no more than 1 K/min (and its lag) on the way up
    rising = t < 20 * 60
    assert np.all(np.diff(temperature[rising]) <= PERIOD_S / 60 + 1e-9)
    assert temperature[rising][-1] < 45.0 - 1.0
    [chamber_step, _] = db.steps(outcome.test_id)
    assert chamber_step.end_test_time_s - chamber_step.start_test_time_s >= 25 * 60


@pytest.mark.parametrize(("value", "message"), [
    ("fast", "plan.yaml:4: steps[0].ramp: expected a temperature rate like '1 K/min'"),
    ("-1 K/min", "plan.yaml:4: steps[0].ramp: must be positive"),
    ("1 V/min", "plan.yaml:4: steps[0].ramp"),
])
def test_a_bad_ramp_is_named(value: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(f"name: r\nsteps:\n  - chamber: 45 °C\n    ramp: {value}\n    timeout: 2 h\n",
                   "plan.yaml")
    assert message in str(caught.value)


def test_the_normal_form_keeps_the_ramp() -> None:
    text = dump_plan(parse_plan(PLAN, "plan.yaml"))
    assert "ramp: 1 K/min" in text
    assert dump_plan(parse_plan(text, "plan.yaml")) == text

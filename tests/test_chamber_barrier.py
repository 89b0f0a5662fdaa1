"""Channels that share a climate chamber meet at their chamber steps before it changes: no test
changes its neighbours' climate, and two tests asking one chamber for different climates at
once end with an alarm naming both, never a silent winner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cellbench_core.events import TestStatus
from cellbench_core.plan import parse_plan
from cellbench_core.runner import ChannelRef, TestOutcome, TestRequest
from cellbench_core.storage import open_database
from cellbench_hal import VirtualClock
from cellbench_sim.chamber import SimChamber, SimChamberSettings
from cellbench_sim.channel import SimChannels, SimChannelSettings

PERIOD_S = 10.0


def plan(rest: str, celsius: float = 40.0, timeout: str = "2 h") -> str:
    return f"""\
name: rest {rest} then {celsius:g} °C
steps:
  - Rest for {rest}
  - {{chamber: {celsius:g} °C, within: 1 K, stable: 5 min, timeout: {timeout}}}
  - Rest for 10 min
"""


class RecordingChamber(SimChamber):
    """The simulated chamber, noting when each setpoint reached it (clock seconds)."""

    def __init__(self) -> None:
        super().__init__(SimChamberSettings(max_ramp_k_per_min=5.0))
        self.setpoints: list[tuple[float, float]] = []
        self.clock: VirtualClock | None = None

    async def set_temperature(self, celsius: float) -> None:
        assert self.clock is not None
        self.setpoints.append((self.clock.now(), celsius))
        await super().set_temperature(celsius)


Run = Callable[[list[str], list[int]], tuple[list[TestOutcome], list[RecordingChamber],
                                               list[list[str]]]]


@pytest.fixture
def run(tmp_path: Path, run_requests: Any) -> Run:
    """``run(plans, chambers)``: ``plans[n]`` on channel n+1, in chamber ``chambers[n]``;
    returns the outcomes, the chambers and each test's alarms."""

    def go(plans: list[str], chambers: list[int]) -> tuple[
            list[TestOutcome], list[RecordingChamber], list[list[str]]]:
        db = open_database(f"sqlite:///{tmp_path / 'barrier.db'}")
        clock = VirtualClock()
        driver = SimChannels(SimChannelSettings(count=len(plans), capacity_spread=0.0,
                                                resistance_spread=0.0))
        rooms = [RecordingChamber() for _ in range(max(chambers) + 1)]
        for room in rooms:
            room.clock = clock
        requests = [TestRequest(ChannelRef(n + 1, driver, "sim", n), parse_plan(text, "plan.yaml"),
                                chamber=rooms[chambers[n]], chamber_name=f"room{chambers[n]}")
                    for n, text in enumerate(plans)]
        outcomes, _ = run_requests(db, clock, requests, sample_period_s=PERIOD_S)
        alarms = [[event.message for event in db.events(outcome.test_id) if event.kind == "alarm"]
                  for outcome in outcomes]
        return outcomes, rooms, alarms

    return go


def test_the_chamber_changes_once_its_last_channel_arrives(run: Run) -> None:
    outcomes, (room,), alarms = run([plan("10 min"), plan("30 min"), plan("20 min")],
                                    [0, 0, 0])
    assert [o.status for o in outcomes] == [TestStatus.FINISHED] * 3, outcomes
    assert alarms == [[], [], []]
    # One setpoint, when the channel resting 30 minutes reached its chamber step (the tick
    # after it, at the latest) — not 10 minutes in, when the first one did.
    [(when, celsius)] = room.setpoints
    assert celsius == 40.0
    assert 30 * 60 <= when <= 30 * 60 + 2 * PERIOD_S


def test_chambers_do_not_wait_for_each_other(run: Run) -> None:
    outcomes, rooms, _ = run([plan("10 min", 40.0), plan("30 min", 0.0)], [0, 1])
    assert [o.status for o in outcomes] == [TestStatus.FINISHED] * 2, outcomes
    assert [when for when, _ in rooms[0].setpoints] <= [10 * 60 + 2 * PERIOD_S]
    assert [celsius for _, celsius in rooms[1].setpoints] == [0.0]


def test_different_climates_at_once_fail_with_an_alarm_naming_both(run: Run) -> None:
    outcomes, (room,), alarms = run([plan("10 min", 40.0), plan("20 min", 10.0)],
                                    [0, 0])
    assert room.setpoints == []  # no silent winner
    assert [o.status for o in outcomes] == [TestStatus.FAILED] * 2
    for outcome, test_alarms in zip(outcomes, alarms, strict=True):
        assert "ask for different climates at once (channel 1: 40 °C; channel 2: 10 °C)" \
            in outcome.reason
        assert test_alarms == [f"channel {outcome.channel}: {outcome.reason}"]


def test_a_channel_whose_test_ends_elsewhere_releases_the_others(run: Run) -> None:
    # Channel 2's test ends at once (its plan's safety limit is below the cell's voltage);
    # channel 1 reaches its chamber step and must not wait for it.
    failing = plan("30 min").replace("steps:", "limits: {voltage_max: 2.0 V}\nsteps:")
    outcomes, (room,), _ = run([plan("10 min"), failing], [0, 0])
    assert outcomes[0].status is TestStatus.FINISHED
    assert outcomes[1].reason.startswith("safety limit voltage_max 2 V")
    [(when, _)] = room.setpoints
    assert when <= 10 * 60 + 2 * PERIOD_S


def test_the_step_timeout_covers_the_wait_for_the_others(run: Run) -> None:
    outcomes, (room,), _ = run([plan("10 min", timeout="15 min"), plan("60 min")],
                               [0, 0])
    assert outcomes[0].status is TestStatus.FAILED
    assert outcomes[0].reason == ("the other channels in chamber 'room0' did not reach their "
                                  "chamber steps within 900 s (line 4)")
    # Once the first test has failed, the second one is alone in the chamber and goes on.
    assert outcomes[1].status is TestStatus.FINISHED
    assert [celsius for _, celsius in room.setpoints] == [40.0]

"""A chamber that reports a fault (door open, an alarm) or stops answering pauses the tests
inside (output off, resumed when it is back, no sample lost) or ends them with an alarm, as the
station's ``on_fault`` says."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import TestStatus
from cellbench_core.plan import parse_plan
from cellbench_core.runner import ChannelRef, TestOutcome, TestRequest
from cellbench_core.runner.records import ChamberFaultPolicy
from cellbench_core.station import station_from_dict
from cellbench_core.storage import Database, open_database
from cellbench_hal import ChamberState, DeviceTimeout, VirtualClock
from cellbench_sim.chamber import SimChamber, SimChamberSettings
from cellbench_sim.channel import SimChannels, SimChannelSettings

PERIOD_S = 10.0
FAULT = (10 * 60.0, 15 * 60.0)  # clock seconds from the start during which the chamber is wrong

PLAN = """\
name: discharge in a chamber
capacity: 2.5 Ah
steps:
  - Discharge at 0.5C for 30 min
"""


class FaultyChamber(SimChamber):
    """The simulated chamber, wrong during ``FAULT``: reporting ``fault``, or silent."""

    def __init__(self, fault: str | None) -> None:
        super().__init__(SimChamberSettings())
        self.fault = fault  # None: it stops answering
        self.clock: VirtualClock | None = None

    async def read(self) -> ChamberState:
        assert self.clock is not None
        state = await super().read()
        if not FAULT[0] <= self.clock.now() < FAULT[1]:
            return state
        if self.fault is None:
            raise DeviceTimeout(self.name, "read: no answer within 1 s")
        return dataclasses.replace(state, fault=self.fault)


Run = Callable[[str | None, ChamberFaultPolicy], tuple[Database, list[TestOutcome]]]


@pytest.fixture
def run(tmp_path: Path, run_requests: Any) -> Run:
    """``run(fault, policy)``: two channels discharging in a chamber that is wrong during
    ``FAULT``; returns the database and the outcomes."""

    def go(fault: str | None, policy: ChamberFaultPolicy) -> tuple[Database, list[TestOutcome]]:
        db = open_database(f"sqlite:///{tmp_path / 'faults.db'}")
        clock = VirtualClock()
        driver = SimChannels(SimChannelSettings(count=2, capacity_spread=0.0,
                                                resistance_spread=0.0))
        chamber = FaultyChamber(fault)
        chamber.clock = clock
        plan = parse_plan(PLAN, "plan.yaml")
        requests = [TestRequest(ChannelRef(n + 1, driver, "sim", n), plan, chamber=chamber,
                                chamber_name="room", chamber_on_fault=policy)
                    for n in range(2)]
        outcomes, _ = run_requests(db, clock, requests, sample_period_s=PERIOD_S)
        return db, outcomes

    return go


@pytest.mark.parametrize("fault", ["door open", None], ids=["door open", "no answer"])
def test_a_fault_pauses_the_tests_inside_and_they_go_on_when_it_is_back(
        run: Run, fault: str | None) -> None:
    db, outcomes = run(fault, "pause")
    what = fault or "sim-chamber: read: no answer within 1 s"
    for outcome in outcomes:
        assert outcome.status is TestStatus.FINISHED, outcome
        samples = db.samples(outcome.test_id)
        seq, t, current = samples["seq"], samples["test_time_s"], samples["current_a"]
        assert list(seq) == list(range(1, len(seq) + 1))  # no sample lost
        inside = (t > FAULT[0] + PERIOD_S) & (t < FAULT[1])
        assert inside.any() and np.all(current[inside] == 0.0)  # output off meanwhile
        assert np.all(current[t < FAULT[0]] < 0)
        # The step kept its planned length: 30 minutes of discharge, the pause not counted.
        [step] = db.steps(outcome.test_id)
        assert step.ah == pytest.approx(-1.25 * 0.5, rel=0.02)
        assert 35 * 60 - 2 * PERIOD_S <= t[-1] <= 35 * 60 + 2 * PERIOD_S
        events = [(e.kind, e.message) for e in db.events(outcome.test_id)
                  if e.kind in ("alarm", "chamber_back")]
        assert [kind for kind, _ in events] == ["alarm", "chamber_back"]
        assert what in events[0][1] and "paused, output off" in events[0][1]
        assert events[1][1] == "chamber 'room' is back: the test goes on"


def test_a_fault_ends_the_tests_inside_when_the_station_says_so(run: Run) -> None:
    db, outcomes = run("alarm 12: heater", "end")
    for outcome in outcomes:
        assert outcome.status is TestStatus.FAILED
        assert outcome.reason == "chamber 'room': alarm 12: heater"
        t = db.samples(outcome.test_id)["test_time_s"]
        assert FAULT[0] - PERIOD_S <= t[-1] <= FAULT[0] + PERIOD_S  # ended at the first read


def test_the_station_file_sets_the_policy_and_band_grace_per_chamber() -> None:
    config = station_from_dict({
        "station": {"name": "s", "database": "sqlite:///station.db"},  # never opened
        "channels": [{"driver": "sim"}],
        "chambers": [{"kind": "sim", "name": "hot"}, {"kind": "sim", "name": "cold",
                                                       "on_fault": "end", "band_grace": "2 min"}],
    }, "station.toml")
    assert [c.on_fault for c in config.chambers] == ["pause", "end"]
    assert [c.band_grace for c in config.chambers] == [60.0, 120.0]
    with pytest.raises(ValueError, match=r"chambers\[0\]\.on_fault"):
        station_from_dict({
            "station": {"name": "s", "database": "sqlite:///station.db"},  # never opened
            "channels": [{"driver": "sim"}],
            "chambers": [{"kind": "sim", "name": "hot", "on_fault": "ignore"}],
        }, "station.toml")


BAND_PLAN = """\
name: discharge at 40 °C
capacity: 2.5 Ah
steps:
  - chamber: 40 °C
    within: 1 K
    stable: 5 min
    timeout: 2 h
  - Discharge at 0.5C for 30 min
"""
DRIFT = (1500.0, 1800.0)  # clock seconds during which the chamber runs 3 K warm


class DriftingChamber(SimChamber):
    """The simulated chamber, 3 K warmer than its model during ``DRIFT``."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(SimChamberSettings())
        self.clock = clock

    async def read(self) -> ChamberState:
        state = await super().read()
        if DRIFT[0] <= self.clock.now() < DRIFT[1]:
            return dataclasses.replace(state, temperature_c=state.temperature_c + 3.0)
        return state


@pytest.mark.parametrize("policy", ["pause", "end"])
def test_a_climate_that_leaves_its_stable_band_is_a_fault_after_the_grace(
        tmp_path: Path, run_requests: Any, policy: ChamberFaultPolicy) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'band.db'}")
    clock = VirtualClock()
    driver = SimChannels(SimChannelSettings(count=1))
    request = TestRequest(ChannelRef(1, driver, "sim", 0), parse_plan(BAND_PLAN, "plan.yaml"),
                          chamber=DriftingChamber(clock), chamber_name="room",
                          chamber_on_fault=policy, chamber_band_grace_s=60.0)
    [outcome], _ = run_requests(db, clock, [request], sample_period_s=PERIOD_S)
    samples = db.samples(outcome.test_id)
    t, current = samples["test_time_s"], samples["current_a"]
    assert np.all(current[t < DRIFT[0]][-10:] < 0)  # discharging when the drift began
    alarms = [e.message for e in db.events(outcome.test_id) if e.kind == "alarm"]
    band = ("chamber 'room': the climate left the band it was stable in (40 °C ± 1 K) for more "
            "than 60 s")
    assert len(alarms) == 1 and band in alarms[0], alarms
    if policy == "end":
        assert outcome.status is TestStatus.FAILED
        # Within the grace the test went on; after it the test ended.
        assert abs(t[-1] - (DRIFT[0] + 60.0)) <= 2 * PERIOD_S
        return
    assert outcome.status is TestStatus.FINISHED, outcome
    off = (t > DRIFT[0] + 60.0 + PERIOD_S) & (t < DRIFT[1])
    assert off.any() and np.all(current[off] == 0.0)  # paused while out of its band
    assert np.all(current[(t > DRIFT[1] + PERIOD_S) & (t < DRIFT[1] + 600.0)] < 0)
    assert [e.kind for e in db.events(outcome.test_id)].count("chamber_back") == 1

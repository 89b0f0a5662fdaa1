"""End to end on the virtual clock: plan -> runner -> simulated cells -> SQLite, checked against
the physics of the cell model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import TestStatus
from cellbench_core.runner import RunError
from cellbench_core.storage import open_database

CAPACITY = 2.5
RunOnSim = Callable[..., Any]

PREPARE = """
name: {name}
capacity: 2.5 Ah
limits: {{voltage_max: 4.3 V, voltage_min: 2.4 V, temperature_max: 80 °C}}
steps:
  - Charge at 0.5C to 4.2 V until C/50
  - Rest for 30 minutes
"""


def discharge_capacity(result: Any) -> float:
    discharge = [s for s in result.steps if s.ah < 0]
    assert len(discharge) == 1
    return -discharge[0].ah


@pytest.mark.parametrize("chemistry", ["nmc", "lfp"])
def test_capacity_at_c10_matches_the_cell_and_is_lower_at_2c(run_on_sim: RunOnSim,
                                                             chemistry: str) -> None:
    cutoff = "2.5 V"
    slow = run_on_sim(PREPARE.format(name="c10").replace("4.2 V", (
        "4.2 V" if chemistry == "nmc" else "3.65 V")) + f"  - Discharge at C/10 until {cutoff}\n",
        chemistry=chemistry, initial_soc=0.3)
    fast = run_on_sim(PREPARE.format(name="2c").replace("4.2 V", (
        "4.2 V" if chemistry == "nmc" else "3.65 V")) + f"  - Discharge at 2C until {cutoff}\n",
        chemistry=chemistry, initial_soc=0.3)
    assert [o.status for o in slow.outcomes + fast.outcomes] == [TestStatus.FINISHED] * 2
    c10, c2 = discharge_capacity(slow), discharge_capacity(fast)
    assert c10 == pytest.approx(CAPACITY, rel=0.03)
    assert c2 < 0.995 * c10  # IR drop and polarisation reach the cut-off earlier


def test_cv_phase_current_decays(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: cv
capacity: 2.5 Ah
steps:
  - Charge at 1C until 4.2 V
  - Hold at 4.2 V until C/20
""", initial_soc=0.2, sample_period_s=2.0)
    data = result.samples
    hold = data["step_index"] == 1
    current = data["current_a"][hold]
    assert len(current) > 100
    assert current[0] > 0.5 * CAPACITY  # the CV phase starts near the CC current
    assert np.all(np.diff(current) <= 1e-9)  # and only ever decays
    assert current[-1] <= CAPACITY / 20
    assert np.allclose(data["voltage_v"][hold], 4.2, atol=2e-3)


def test_voltage_never_crosses_a_safety_limit_by_more_than_one_sample_step(
        run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: overcharge
capacity: 2.5 Ah
limits: {voltage_max: 4.25 V}
steps:
  - Charge at 2C until 4.6 V
""", initial_soc=0.6, sample_period_s=10.0)
    outcome = result.outcomes[0]
    assert outcome.status is TestStatus.STOPPED
    assert "voltage_max 4.25 V" in outcome.reason
    v = result.samples["voltage_v"]
    largest_step = np.abs(np.diff(v)).max()
    assert v[-1] > 4.25  # the sample that tripped is stored
    assert v.max() - 4.25 <= largest_step
    assert v[:-1].max() <= 4.25  # no sample before it was beyond the limit
    alarms = [e for e in result.db.events(outcome.test_id) if e.kind == "alarm"]
    assert len(alarms) == 1 and "voltage_max" in alarms[0].message
    assert result.after.current_a[0] == 0.0  # after the trip the output is off


def test_charge_out_is_charge_in_times_coulombic_efficiency(run_on_sim: RunOnSim) -> None:
    efficiency = 0.98
    result = run_on_sim("""
name: efficiency
capacity: 2.5 Ah
steps:
  - Discharge at C/10 until 2.5 V
  - Rest for 2 hours
  - Charge at C/10 to 4.2 V until C/100
  - Rest for 2 hours
  - Discharge at C/10 until 2.5 V
""", efficiency=efficiency, initial_soc=0.1, sample_period_s=10.0)
    steps = result.steps
    charge_in = steps[2].ah
    charge_out = -steps[4].ah
    assert charge_out == pytest.approx(charge_in * efficiency, rel=0.005)


def test_every_channel_follows_its_own_plan_and_counters_add_up(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: cycles
capacity: 2.5 Ah
steps:
  - Rest for 1 minute
  - repeat: 2
    steps:
      - Charge at 1C to 4.2 V until C/10
      - Discharge at 1C until 3.0 V
""", channels=4, capacity_spread=0.03, seed=7, initial_soc=0.5)
    ends = set()
    for channel, outcome in enumerate(result.outcomes):
        assert outcome.status is TestStatus.FINISHED
        data = result.samples_of(channel)
        assert np.array_equal(data["seq"], np.arange(1, len(data["seq"]) + 1))
        assert set(np.unique(data["cycle"])) == {0, 1, 2}
        steps = result.steps_of(channel)
        assert [s.step_index for s in steps] == [0, 1, 2, 1, 2]
        for step in steps:  # the step's Ah is the integral of the current over its samples
            rows = (data["seq"] >= step.start_seq) & (data["seq"] <= step.end_seq)
            assert data["ah"][rows][-1] == pytest.approx(step.ah)
        ends.add(round(float(data["test_time_s"][-1])))
    assert len(ends) > 1  # cells with spread finish at different times


def test_plan_beyond_the_channel_range_is_refused_before_anything_starts(
        tmp_path: Path, run_on_sim: RunOnSim) -> None:
    with pytest.raises(RunError, match="plan.yaml:4: 20 A is beyond channel 1's range"):
        run_on_sim("""
name: too much
steps:
  - Charge at 20 A for 1 minute
""", current_max_a=10.0)
    db = open_database(f"sqlite:///{tmp_path / 'results.db'}")
    assert db.tests() == []

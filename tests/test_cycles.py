"""Per-cycle results (the ``cycles`` view over the steps' charge, energy and temperature) as a
battery engineer reads them, checked against the simulated cell on the virtual clock."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cellbench_core.events import TestStatus

CYCLING = """\
name: three cycles
capacity: 2.5 Ah
steps:
  - repeat: 3
    steps:
      - Charge at C/2 to 4.2 V until C/20
      - Rest for 30 minutes
      - Discharge at C/2 until 2.5 V
      - Rest for 30 minutes
"""

ONE_DISCHARGE = """\
name: one discharge
capacity: 2.5 Ah
steps:
  - Discharge at C/5 until 2.5 V
  - Rest for 10 minutes
"""


def test_each_cycle_sums_its_steps(run_on_sim: Any) -> None:
    result = run_on_sim(CYCLING, sample_period_s=10.0, initial_soc=0.0)
    assert result.outcome.status is TestStatus.FINISHED, result.outcome.reason
    test_id = result.outcome.test_id
    cycles = result.db.cycles(test_id)
    steps = result.db.steps(test_id)
    assert [c.cycle for c in cycles] == [1, 2, 3]
    for cycle in cycles:
        mine = [s for s in steps if s.cycle == cycle.cycle]
        assert cycle.steps == len(mine) == 4
        assert (cycle.start_seq, cycle.end_seq) == (mine[0].start_seq, mine[-1].end_seq)
        assert cycle.charge_ah == pytest.approx(sum(s.charge_ah for s in mine))
        assert cycle.discharge_wh == pytest.approx(sum(s.discharge_wh for s in mine))
        # Each step flowed one way: its split matches its signed total
        for s in mine:
            assert s.charge_ah - s.discharge_ah == pytest.approx(s.ah, abs=1e-9)
        # A full C/2 discharge of the 2.5 Ah cell, a little short of it for the resistance
        assert 2.3 < cycle.discharge_ah < 2.5
        assert cycle.coulombic_efficiency == pytest.approx(
            cycle.discharge_ah / cycle.charge_ah)
        assert 0.9 < cycle.coulombic_efficiency <= 1.0
        assert cycle.energy_efficiency < cycle.coulombic_efficiency  # charged at higher volts
        assert cycle.mean_discharge_v == pytest.approx(cycle.discharge_wh / cycle.discharge_ah)
        assert 3.0 < cycle.mean_discharge_v < cycle.mean_charge_v < 4.2
        assert cycle.temperature_min_c <= cycle.temperature_max_c
        assert cycle.duration_s == pytest.approx(
            mine[-1].end_test_time_s - mine[0].start_test_time_s)
        assert cycle.end_reasons.split("; ")[1:] == [
            s.end_reason for s in mine][1:]


def test_a_plan_without_a_loop_is_one_cycle_and_its_steps_say_the_rest(
        run_on_sim: Any) -> None:
    result = run_on_sim(ONE_DISCHARGE, sample_period_s=10.0)
    [cycle] = result.db.cycles(result.outcome.test_id)
    assert cycle.cycle == 0 and cycle.steps == 2
    assert cycle.charge_ah == 0.0 and math.isnan(cycle.coulombic_efficiency)
    [discharge, rest] = result.db.steps(result.outcome.test_id)
    assert discharge.discharge_ah == pytest.approx(cycle.discharge_ah)
    assert rest.charge_ah == rest.discharge_ah == 0.0
    assert cycle.end_reasons == "voltage <= 2.5 V; step_time >= 600 s"

"""A cycle-life plan on the ageing simulated cell: each capacity check-up measures the fade
the ageing model predicts for the charge passed since the last one; without ageing, none."""

from __future__ import annotations

from typing import Any

import pytest

from cellbench_core.events import TestStatus
from cellbench_sdk.ageing import CHEMISTRY_AGEING

# Precise check-ups (the constant-voltage tail takes the charge a voltage cut-off would leave
# to the sample period) between five 1C cycles each.
CYCLE_LIFE = """\
name: cycle life with check-ups
capacity: 2.5 Ah
steps:
  - repeat: 3
    cycle: false
    steps:
      - Charge at C/2 to 4.2 V until C/50
      - Rest for 10 minutes
      - Discharge at C/2 to 2.5 V until C/50
      - Rest for 10 minutes
      - repeat: 5
        steps:
          - Charge at 1C to 4.2 V until C/20
          - Discharge at 1C to 2.7 V until C/20
"""
#: Only cycle ageing, fast (0.1 % of the capacity per equivalent full cycle), resistance fixed.
CYCLE_AGEING = {"calendar_fade_first_year": 0.0, "calendar_growth_first_year": 0.0,
                "cycle_fade_per_1000_efc": 1.0, "cycle_growth_per_1000_efc": 0.0}


def check_ups(run_on_sim: Any, ageing: object) -> tuple[list[float], list[float]]:
    """The capacities the check-ups measured, and the equivalent full cycles passed from the
    start of the test to the start of each."""
    # The cell sheds its heat at once: it ages at 25 °C, where the parameters are given.
    result = run_on_sim(CYCLE_LIFE, sample_period_s=30.0, initial_soc=0.0, ageing=ageing,
                        heat_transfer_w_per_k=1e6)
    assert result.outcome.status is TestStatus.FINISHED, result.outcome.reason
    capacities, efc, passed_ah = [], [], 0.0
    for step in result.steps:
        if step.step_index == 2:  # the check-up's discharge
            capacities.append(step.discharge_ah)
            efc.append(passed_ah / (2 * 2.5))
        passed_ah += step.charge_ah + step.discharge_ah
    assert len(capacities) == 3
    return capacities, efc


def test_check_ups_measure_the_fade_of_the_charge_passed(run_on_sim: Any) -> None:
    capacities, efc = check_ups(run_on_sim, CYCLE_AGEING)
    assert efc[1] - efc[0] > 5 and efc[2] - efc[1] > 5  # five cycles and a check-up between
    for n in (1, 2):
        measured = 1 - capacities[n] / capacities[n - 1]
        # The fade over the cycles between two check-ups, from the model's closed form
        # (fraction 1 - f·EFC/1000 of the fresh capacity).
        predicted = (efc[n] - efc[n - 1]) / (1000 - efc[n - 1])
        assert measured == pytest.approx(predicted, rel=0.05)


def test_without_ageing_every_check_up_measures_the_same(run_on_sim: Any) -> None:
    capacities, _ = check_ups(run_on_sim, "none")
    assert capacities[1] == pytest.approx(capacities[0], rel=2e-4)
    assert capacities[2] == pytest.approx(capacities[0], rel=2e-4)


def test_default_ageing_of_nmc_fades_by_the_published_rate(run_on_sim: Any) -> None:
    capacities, efc = check_ups(run_on_sim, "default")
    nmc = CHEMISTRY_AGEING["nmc"]
    measured = 1 - capacities[2] / capacities[0]
    cycle_part = nmc.cycle_fade_per_1000_efc * (efc[2] - efc[0]) / 1000
    # The calendar part adds a little over these few days (square-root law: most of it early)
    assert cycle_part < measured < cycle_part + nmc.calendar_fade_first_year * (7 / 365) ** 0.5

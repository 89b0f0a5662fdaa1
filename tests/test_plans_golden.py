"""Golden plans (plans/*.yaml): real-world procedures run end to end on the simulated channel
and the virtual clock, with their outcome checked against the cell model's parameters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import PlanMessage, TestStatus
from cellbench_core.hookspecs import hookimpl
from cellbench_core.plugins import PluginManager
from cellbench_sim.chamber import SimChamber, SimChamberSettings

PLANS = Path(__file__).parents[1] / "plans"
R0, R1, TAU = 0.030, 0.020, 60.0  # the simulated cell's defaults


RunOnSim = Callable[..., Any]


def run(run_on_sim: RunOnSim, plan: str, sample_period_s: float, **options: Any) -> Any:
    """Run the golden plan ``plan`` (a file in plans/) to its end."""
    result = run_on_sim(PLANS / plan, sample_period_s=sample_period_s, **options)
    assert result.outcome.status is TestStatus.FINISHED, result.outcome.reason
    return result


def test_capacity_check_measures_the_cells_capacity(run_on_sim: RunOnSim) -> None:
    result = run(run_on_sim, "capacity-check.yaml", 10.0, initial_soc=0.3)
    discharges = [s for s in result.steps if s.ah < 0]
    assert len(discharges) == 2
    c5, c1 = (-s.ah for s in discharges)
    assert c5 == pytest.approx(2.5, rel=0.03)
    assert c1 < c5


def test_hppc_resistances_match_the_cell(run_on_sim: RunOnSim) -> None:
    period = 5.0
    result = run(run_on_sim, "hppc.yaml", period, initial_soc=0.5)
    data = result.samples
    seq, v, i = data["seq"], data["voltage_v"], data["current_a"]
    pulses: dict[str, list[float]] = {"discharge-pulse": [], "charge-pulse": []}
    for step in result.steps:
        if step.step_index in (4, 6):  # the pulses
            before = np.flatnonzero(seq == step.start_seq - 1)[0]  # the rest's last sample
            first = before + 1
            resistance = (v[first] - v[before]) / (i[first] - i[before])
            pulses["discharge-pulse" if i[first] < 0 else "charge-pulse"].append(resistance)
    # After one sample period the step is R0 plus what the RC pair has taken up.
    expected = R0 + R1 * (1 - np.exp(-period / TAU))
    for resistances in pulses.values():
        assert len(resistances) == 9
        # Down to 30 % state of charge the cell's resistance is flat (levels 90 % to 40 %
        # stay clear of that edge); below it rises.
        assert resistances[:6] == pytest.approx([expected] * 6, rel=0.03)
        assert resistances[-1] > resistances[0]


def test_gitt_titrates_down_to_the_cut_off(run_on_sim: RunOnSim) -> None:
    result = run(run_on_sim, "gitt.yaml", 10.0, initial_soc=0.5)
    pulses = [s for s in result.steps if s.step_index == 2]
    rests = [s for s in result.steps if s.step_index == 3]
    assert 25 <= len(pulses) <= 31  # C/5 for 10 min takes 1/30 of the capacity
    assert all(p.ah == pytest.approx(-0.5 / 6, rel=1e-9) for p in pulses[:-1])
    # every relaxation ended on the voltage settling, not on its 2 h limit
    assert all(r.end_test_time_s - r.start_test_time_s < 3600 for r in rests)
    data = result.samples
    relaxed = [data["voltage_v"][data["seq"] == r.end_seq][0] for r in rests]
    assert np.all(np.diff(relaxed) < 0)  # the OCV curve, point by point
    assert data["voltage_v"][data["step_index"] == 2].min() >= 2.5 - 0.05


def test_drive_cycle_repeats_its_profile_to_the_cut_off(run_on_sim: RunOnSim) -> None:
    result = run(run_on_sim, "drive-cycle.yaml", 5.0, initial_soc=0.5)
    cycles = [s for s in result.steps if s.step_index == 2]
    assert len(cycles) > 5
    full = cycles[:-1]
    assert all(s.end_test_time_s - s.start_test_time_s == 600 for s in full)
    rows = np.loadtxt(PLANS / "tables" / "urban-drive-cycle.csv", delimiter=",", skiprows=1)
    per_cycle = rows[:-1, 1].sum() / 3600  # each row held for one second
    assert [s.ah for s in full] == pytest.approx([per_cycle] * len(full), rel=1e-9)
    assert result.samples["voltage_v"].min() <= 2.7


class Recorder:
    """A notifier plugin: keeps the plan messages it is handed."""

    def __init__(self) -> None:
        self.messages: list[PlanMessage] = []

    @hookimpl
    def cellbench_message(self, event: PlanMessage) -> None:
        self.messages.append(event)


def test_cycle_life_cycles_at_the_measured_capacity(tmp_path: Path, run_on_sim: RunOnSim) -> None:
    # The golden plan, with fewer passes: two check-ups of two cycles each.
    text = (PLANS / "cycle-life.yaml").read_text(encoding="utf-8")
    text = text.replace("repeat: 20", "repeat: 2").replace("repeat: 50", "repeat: 2")
    plan = tmp_path / "cycle-life.yaml"
    plan.write_text(text, encoding="utf-8")
    manager = PluginManager()
    recorder = Recorder()
    manager.register("recorder", recorder)
    result = run(run_on_sim, str(plan), 10.0, capacity_ah=2.2, initial_soc=0.5,
                 hooks=manager.hook)
    steps = result.steps
    checkups = [s for s in steps if s.step_index == 2]
    assert len(checkups) == 2 and -checkups[0].ah == pytest.approx(2.2, rel=0.02)
    data = result.samples
    cycling = [s for s in steps if s.step_index == 6]  # the 1C discharges
    assert len(cycling) == 4
    for step in cycling:  # 1C of the capacity measured, not of the nominal 2.5 Ah
        rows = (data["seq"] >= step.start_seq) & (data["seq"] <= step.end_seq)
        measured = -[c.ah for c in checkups if c.end_seq < step.start_seq][-1]  # the last
        assert data["current_a"][rows] == pytest.approx(-measured, rel=1e-9)
    assert [(m.plan_line, m.text) for m in recorder.messages] == [(15, "capacity check-up")] * 2
    events = [e.message for e in result.db.events(result.outcome.test_id) if e.kind == "message"]
    assert events == ["capacity check-up"] * 2


def test_temperature_sweep_waits_for_the_chamber(run_on_sim: RunOnSim) -> None:
    chamber = SimChamber(SimChamberSettings(ambient_c=25.0, max_ramp_k_per_min=3.0))
    result = run(run_on_sim, "temperature-sweep.yaml", 10.0, initial_soc=0.5, chamber=chamber)
    chamber_steps = [s for s in result.steps if s.text.startswith("chamber")]
    waits = [s.end_test_time_s - s.start_test_time_s for s in chamber_steps]
    assert len(waits) == 5 and all(s.end_reason == "chamber stable" for s in chamber_steps)
    # Already at 25 °C: stable for 30 min from the first reading, one sample period in.
    assert waits[0] == 1810.0
    # 25 K at 3 K/min at most, then the approach into the 1 K band, then 30 min stable
    assert 1800 + 25 / 3 * 60 < waits[1] < 4 * 3600
    assert waits[2] == waits[1]  # 25 K up takes the chamber as long as 25 K down
    assert waits[0] < waits[3] < waits[1]  # 25 °C to 45 °C is only 20 K
    assert len([s for s in result.steps if s.ah < 0]) == 3


def test_cycling_runs_at_rates_of_the_capacity_measured_into_a_variable(
        run_on_sim: RunOnSim) -> None:
    # The cell holds 2.2 Ah; the plan's nominal capacity says 2.5 Ah.
    result = run(run_on_sim, "measured-rates.yaml", 10.0, capacity_ah=2.2, initial_soc=0.5)
    steps = result.steps
    (checkup,) = [s for s in steps if s.step_index == 2]
    q_meas = -checkup.ah
    assert q_meas == pytest.approx(2.2, rel=0.02)
    data = result.samples
    charges = [s for s in steps if s.step_index == 3]
    discharges = [s for s in steps if s.step_index == 5]
    assert len(charges) == len(discharges) == 3
    for charge, discharge in zip(charges, discharges, strict=True):
        first = data["current_a"][data["seq"] == charge.start_seq][0]
        assert first == pytest.approx(0.5 * q_meas, rel=1e-9)  # 0.5C of q_meas, in CC
        rows = (data["seq"] >= discharge.start_seq) & (data["seq"] <= discharge.end_seq)
        assert data["current_a"][rows] == pytest.approx(-q_meas, rel=1e-9)  # 1C of q_meas
        # to 80 % depth of q_meas, overshooting by at most one 10 s sample at 1C
        assert -discharge.ah == pytest.approx(0.8 * q_meas, abs=q_meas * 10 / 3600)
        assert data["voltage_v"][rows].min() > 2.5  # it ended on the charge, not the cut-off
    # The position stored as the last step began: the variable, and the test's counters
    # restarted by the set step, so that they count only the cycling.
    position = result.db.position(result.outcome.test_id)
    assert position is not None
    assert position.state["cursor"]["variables"] == {"q_meas": q_meas}
    cycling = steps[steps.index(checkup) + 1:-1]
    assert position.state["test_ah"] == pytest.approx(sum(s.ah for s in cycling), rel=1e-9)
    assert position.state["charged"][2][0] == pytest.approx(
        sum(s.ah for s in charges), rel=1e-9)

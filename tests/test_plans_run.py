"""Plan language features run end to end on the simulated channel and the virtual clock: the
quantities end conditions watch, the actions they take, loops that end on a condition, safety
limits (delays, limits written against the battery, non-finite readings), ramps and profiles,
set steps and chamber steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import TestStatus
from cellbench_core.runner import RunError
from cellbench_core.storage import StepRecord, open_database
from cellbench_hal import SampleBatch
from cellbench_sim.chamber import SimChamber, SimChamberSettings
from cellbench_sim.channel import SimChannels, SimChannelSettings

EXACT_CELL: dict[str, Any] = {"capacity_ah": 2.5, "capacity_spread": 0.0, "resistance_spread": 0.0}
RunOnSim = Callable[..., Any]


def duration(step: StepRecord) -> float:
    return step.end_test_time_s - step.start_test_time_s


def test_charge_and_discharge_counters_per_step_cycle_and_test(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: counters
steps:
  - Discharge at 1 A for 6 minutes          # 0.1 Ah out
  - Charge at 1 A for 3 minutes             # 0.05 Ah in
  - mode: cc                                # 0.05 Ah more out, then the test total is met
    current: -1 A
    until: test_discharge_ah >= 0.15 Ah and test_charge_ah >= 0.05 Ah and test_ah <= -0.1 Ah
  - mode: cc
    current: 2 A
    until: step_charge_ah >= 0.1 Ah or step_discharge_ah >= 1 mAh
""", initial_soc=0.5)
    assert result.outcome.status is TestStatus.FINISHED
    steps = result.steps
    assert duration(steps[2]) == pytest.approx(180, abs=5)  # one sample period
    assert duration(steps[3]) == pytest.approx(180, abs=5)
    assert steps[3].ah == pytest.approx(0.1, abs=0.003)


def test_cycle_counters_restart_with_each_cycle(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: cycles
steps:
  - repeat: 3
    steps:
      - Discharge at 1 A for 3 minutes
      - mode: cc
        current: 1 A
        until: >-
          cycle_charge_ah >= 0.025 Ah and cycle_discharge_ah >= 0.05 Ah
          and cycle_ah >= -0.025 Ah
""", initial_soc=0.5)
    charges = [s for s in result.steps if s.ah > 0]
    assert len(charges) == 3
    for step in charges:  # each cycle charges 0.025 Ah, whatever earlier cycles did
        assert duration(step) == pytest.approx(90, abs=5)


def test_rest_until_the_voltage_settles(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: relaxation
capacity: 2.5 Ah
steps:
  - Discharge at 1C for 20 minutes
  - mode: rest
    until: abs_dv_dt <= 0.5 mV/min or step_time >= 3 h
""", initial_soc=0.8, sample_period_s=10.0)
    rest = result.steps[1]
    data = result.samples
    in_rest = data["step_index"] == 1
    v, t = data["voltage_v"][in_rest], data["test_time_s"][in_rest]
    rates = np.abs(np.diff(v) / np.diff(t))
    assert rates[-1] <= 0.5e-3 / 60  # the sample that ended the rest met the condition
    assert np.all(rates[:-1] > 0.5e-3 / 60)  # and none before it
    assert 60 < duration(rest) < 3 * 3600


def test_actions_goto_end_loop_and_end_test(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: actions
steps:
  - mode: cc                              # three passes of 2 minutes each: 0.1 Ah in all
    current: -1 A
    for: 2 minutes
    label: top
  - mode: rest
    until:
      - when: test_discharge_ah <= 0.09 Ah and step_time >= 1 min
        then: goto top
      - step_time >= 1 min
  - repeat: 10
    steps:
      - Rest for 1 minute
      - mode: rest
        until:
          - when: cycle >= 3 and step_time >= 1 min
            then: end loop
          - step_time >= 1 min
  - mode: rest
    until:
      - when: step_time >= 1 min
        then: end test
  - Rest for 1 hour                       # never reached
""", initial_soc=0.5)
    assert result.outcome.status is TestStatus.FINISHED
    assert result.outcome.reason == "end test at line 21"
    steps = result.steps
    assert [s.step_index for s in steps] == [0, 1] * 3 + [2, 3] * 3 + [4]
    assert [s.cycle for s in steps[6:]] == [1, 1, 2, 2, 3, 3, 3]


def test_loop_until_a_share_of_the_first_pass(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: fade
capacity: 2.5 Ah
steps:
  - repeat: 20
    until: cycle_discharge_ah < 50 % of first
    steps:
      - Discharge at C/2 for 40 minutes or until 3.4 V     # 0.83 Ah while the cell lasts
      - Rest for 20 minutes
""", initial_soc=0.9)
    assert result.outcome.status is TestStatus.FINISHED
    amounts = [-s.ah for s in result.steps if s.ah < 0]
    assert 2 < len(amounts) < 20
    assert amounts[0] == pytest.approx(2.5 / 2 * 40 / 60, rel=0.01)
    assert amounts[-1] < 0.5 * amounts[0] <= amounts[-2]


# --- safety limits ---------------------------------------------------------------------------

CELL = {"name": "nmc-2.5", "chemistry": "nmc", "nominal_capacity_ah": 2.5,
        "voltage_max_v": 4.1, "voltage_min_v": 2.5, "current_max_charge_a": 5.0,
        "current_max_discharge_a": 2.0, "temperature_max_c": 60.0}
CHARGE = """
name: limits
capacity: 2.5 Ah
limits:
  voltage_max: {limit}
steps:
  - Charge at 1C until 4.3 V
"""


def first_beyond(result: Any, volts: float) -> tuple[float, float]:
    """The test time of the first sample above ``volts``, and of the last sample."""
    data = result.samples
    above = data["voltage_v"] > volts
    assert above[-1] and not above[:-1].all()
    return float(data["test_time_s"][np.argmax(above)]), float(data["test_time_s"][-1])


def test_a_limit_with_a_delay_trips_once_the_reading_stays_beyond_it(
        run_on_sim: RunOnSim) -> None:
    result = run_on_sim(CHARGE.format(limit="4.0 V for 30 s"), battery=CELL,
                 initial_soc=0.6)
    assert result.outcome.status is TestStatus.STOPPED
    assert "safety limit voltage_max 4 V: measured 4.0" in result.outcome.reason
    assert result.outcome.reason.endswith(" V for 30 s")
    beyond, tripped = first_beyond(result, 4.0)
    assert tripped - beyond == 30.0  # samples every 5 s


@pytest.mark.parametrize(("limit", "trips_at"), [
    ("battery + 0.05 V", 4.15),  # against the battery: replaces its 4.1 V
    ("battery", 4.1),
    ("4.3 V", 4.1),  # absolute: the battery's own is tighter
    ("4.05 V", 4.05),
])
def test_limits_against_the_battery(run_on_sim: RunOnSim, limit: str, trips_at: float) -> None:
    plan = CHARGE.format(limit=limit).replace("until 4.3 V", "until 4.25 V")
    result = run_on_sim(plan, battery=CELL, initial_soc=0.6)
    assert f"voltage_max {trips_at:g} V" in result.outcome.reason
    data = result.samples["voltage_v"]
    assert data[-1] > trips_at >= data[:-1].max()


@pytest.mark.parametrize(("plan", "battery", "message"), [
    (CHARGE.format(limit="battery"), None,
     "plan.yaml: limits.voltage_max is written against the battery, but the test has no battery"),
    ("name: t\nlimits: {temperature_min: battery - 5 °C}\nsteps: [Rest for 1 s]\n", CELL,
     "battery 'nmc-2.5' has no registered temperature_min"),
    ("name: t\nlimits: {voltage_max: battery}\nsteps: [Charge at 1 A to 4.2 V for 1 h]\n",
     CELL, "plan.yaml:3: the setpoint 4.2 V is beyond the safety limit voltage_max 4.1 V "
     "(channel 1, battery nmc-2.5)"),
    ("name: t\nlimits: {voltage_min: battery + 1.7 V}\nsteps: [Rest for 1 s]\n", CELL,
     "plan.yaml: voltage_min 4.2 V is not below voltage_max 4.1 V (channel 1)"),
    ("name: t\nsteps: [Charge at 4 A for 1 s, Discharge at 3 A for 1 s]\n", CELL,
     "plan.yaml:2: the setpoint -3 A is beyond the safety limit current_max 2 A"),
    ("name: t\nlimits: {current_max: battery - 1 A}\nsteps: [Charge at 4.5 A for 1 s]\n",
     CELL, "the setpoint 4.5 A is beyond the safety limit current_max 4 A"),
])
def test_plans_beyond_the_battery_are_refused_before_they_start(
        tmp_path: Path, plan: str, battery: dict[str, Any] | None, message: str,
        run_on_sim: RunOnSim) -> None:
    with pytest.raises(RunError) as caught:
        run_on_sim(plan, battery=battery)
    assert message in str(caught.value)
    assert open_database(f"sqlite:///{tmp_path / 'results.db'}").tests() == []


class GlitchingChannels(SimChannels):
    """Reports no voltage (NaN) from a given clock time on."""

    glitch_at_s = 60.0

    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        batch.voltage_v[batch.time_s >= self.glitch_at_s] = np.nan
        return batch


def test_a_missing_reading_trips_at_once_whatever_the_delay(run_on_sim: RunOnSim) -> None:
    driver = GlitchingChannels(SimChannelSettings(count=1, **EXACT_CELL))
    result = run_on_sim("""
name: glitch
limits: {voltage_max: 4.2 V for 1 h, voltage_min: 2.5 V for 1 h}
steps: [Rest for 2 minutes]
""", driver=driver)
    assert result.outcome.status is TestStatus.STOPPED
    assert result.outcome.reason == "safety limit: the voltage reading is nan (not a number)"
    assert result.samples["test_time_s"][-1] == 60.0


# --- ramps and profiles ----------------------------------------------------------------------


def test_a_current_ramp_passes_the_charge_under_its_line(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: ramp
capacity: 2.5 Ah
steps:
  - {mode: ramp, from: 0 A, to: 1C, over: 10 min}
  - {mode: ramp, from: 0 A, to: -1C, over: 10 min, until: step_discharge_ah >= 0.1 Ah}
""", initial_soc=0.5)
    up, down = result.steps
    assert duration(up) == 600.0  # the step ends with its ramp
    assert up.ah == pytest.approx(0.5 * 2.5 * 600 / 3600, rel=1e-9)
    data = result.samples
    first = data["step_index"] == 0
    t = data["test_time_s"][first]
    assert np.allclose(data["current_a"][first], 2.5 * (t - 2.5) / 600)  # mean of each 5 s
    # 0.1 Ah of a ramp to -2.5 A over 600 s: t² · 2.5 / 1200 / 3600 = 0.1, t ≈ 416 s
    assert duration(down) == pytest.approx(416, abs=5)


def test_a_voltage_ramp_is_followed(run_on_sim: RunOnSim) -> None:
    result = run_on_sim("""
name: voltage ramp
steps:
  - Rest for 10 minutes
  - {mode: ramp, from: 3.75 V, to: 3.9 V, over: 30 min, current: 5 A}
""", initial_soc=0.5, sample_period_s=10.0)
    data = result.samples
    ramp = data["step_index"] == 1
    t = data["step_time_s"][ramp]
    assert data["voltage_v"][ramp][-1] == pytest.approx(3.9, abs=1e-6)
    assert np.allclose(data["voltage_v"][ramp][3:], 3.75 + 0.15 * t[3:] / 1800, atol=2e-3)
    assert (data["current_a"][ramp][3:] > 0).all()  # charging to follow the rising voltage


def test_a_drive_cycle_profile_from_a_csv_table(tmp_path: Path, run_on_sim: RunOnSim) -> None:
    (tmp_path / "cycle.csv").write_text(
        "time [s],current [A]\n0,-2\n10,1\n20,-3\n30,0\n60,0\n", encoding="utf-8")
    result = run_on_sim(f"""
name: drive cycle
steps:
  - repeat: 3
    steps:
      - {{mode: profile, table: {tmp_path / 'cycle.csv'}, hold: true, until: voltage <= 2.5 V}}
""", initial_soc=0.8)
    steps = result.steps
    assert [duration(s) for s in steps] == [60.0] * 3
    per_cycle = (-2 * 10 + 1 * 10 - 3 * 10) / 3600
    assert [s.ah for s in steps] == pytest.approx([per_cycle] * 3, rel=1e-9)
    assert result.outcome.status is TestStatus.FINISHED


# --- set steps -------------------------------------------------------------------------------


@pytest.mark.parametrize(("set_to", "reason"), [
    ("20 Ah", "set capacity 20 Ah at plan.yaml:6: plan.yaml:5: -20 A is beyond channel 1's range "
     "of 10 A"),
    ("step_charge_ah", "plan.yaml:6: set capacity: =step_charge_ah gives 0 Ah, not a capacity"),
])
def test_a_capacity_the_plan_cannot_use_fails_the_test_safely(
        run_on_sim: RunOnSim, set_to: str, reason: str) -> None:
    result = run_on_sim(f"""
name: set
capacity: 2.5 Ah
steps:
  - Discharge at 1C for 1 minute
  - set: {{capacity: {set_to}}}
  - Charge at 1C for 1 minute
""", initial_soc=0.5)
    assert result.outcome.status is TestStatus.FAILED
    assert result.outcome.reason.startswith(reason)
    assert [s.step_index for s in result.steps] == [0]
    alarms = [e for e in result.db.events(result.outcome.test_id) if e.kind == "alarm"]
    assert len(alarms) == 1 and reason in alarms[0].message


@pytest.mark.parametrize(("steps", "reason"), [
    ("""  - set: {q: step_discharge_ah * 400}
  - Charge at =1C * q for 1 minute
""", "set q at plan.yaml:7: plan.yaml:8: 16.6667 A is beyond channel 1's range of 10 A"),
    ("""  - set: {v: 4.3 V}
  - {mode: cv, voltage: =v, for: 1 minute}
""", "set v at plan.yaml:7: plan.yaml:8: the setpoint 4.3 V is beyond the safety limit "
     "voltage_max 4.25 V"),
    ("""  - set: {q: step_discharge_ah - 1 Ah}
  - Charge at =q / 1 h for 1 minute
""", "set q at plan.yaml:7: plan.yaml:8: '=q / 1 h' gives -0.958333, which must be positive "
     "(the direction sets the sign)"),
    ("""  - set: {q: 1 Ah / step_charge_ah}
""", "plan.yaml:7: set q: division by zero"),
    ("""  - {mode: rest, for: 1 s, until: [{when: step_time >= 0 s, then: goto charge}]}
  - set: {q: 1 Ah}
  - {mode: cc, current: =q / 1 h, for: 1 minute, label: charge}
""", "plan.yaml:9: the step reads q, which no set step has set yet"),
])
def test_a_variable_the_plan_cannot_use_fails_the_test_safely(
        run_on_sim: RunOnSim, steps: str, reason: str) -> None:
    result = run_on_sim(f"""
name: set
capacity: 2.5 Ah
limits: {{voltage_max: 4.25 V}}
steps:
  - Discharge at 1C for 1 minute
{steps}""", initial_soc=0.5)
    assert result.outcome.status is TestStatus.FAILED
    assert result.outcome.reason.startswith(reason)
    alarms = [e for e in result.db.events(result.outcome.test_id) if e.kind == "alarm"]
    assert len(alarms) == 1 and reason in alarms[0].message


# --- chamber steps ---------------------------------------------------------------------------

CHAMBER_PLAN = """
name: chamber
steps:
  - {chamber: 60 °C, within: 0.5 K, stable: 10 min, timeout: 20 min}
  - Rest for 1 minute
"""


def test_a_chamber_that_is_not_stable_in_time_fails_the_test(run_on_sim: RunOnSim) -> None:
    chamber = SimChamber(SimChamberSettings(max_ramp_k_per_min=1.0))  # 35 K take 35 min
    result = run_on_sim(CHAMBER_PLAN, chamber=chamber)
    assert result.outcome.status is TestStatus.FAILED
    assert result.outcome.reason == "the chamber was not stable within 1200 s (line 4)"
    assert result.steps[0].end_reason == result.outcome.reason
    assert result.samples["test_time_s"][-1] == 1200.0


@pytest.mark.parametrize(("settings", "plan", "message"), [
    (None, CHAMBER_PLAN, "plan.yaml:4: a chamber step, but channel 1 has no climate chamber"),
    ({}, CHAMBER_PLAN.replace("60 °C,", "60 °C, humidity: 50 %,"),
     "plan.yaml:4: the chamber of channel 1 has no humidity control"),
])
def test_chamber_steps_need_a_chamber_that_can_do_them(
        run_on_sim: RunOnSim, settings: dict[str, Any] | None, plan: str, message: str) -> None:
    chamber = None if settings is None else SimChamber(SimChamberSettings(**settings))
    with pytest.raises(RunError, match=message):
        run_on_sim(plan, chamber=chamber)

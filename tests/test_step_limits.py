"""Every resolved step carries its test's safety limits (the tighter of the plan's and the
battery's), for drivers that program them into an instrument's own protection."""

from __future__ import annotations

import math
from pathlib import Path

from cellbench_core.plan import parse_plan
from cellbench_core.plan.program import Program
from cellbench_core.runner import ChannelRef, Runner, TestRequest
from cellbench_core.storage import open_database
from cellbench_hal import StepLimits
from cellbench_sim.channel import SimChannels

PLAN = """\
name: limited
capacity: 2 Ah
limits:
  voltage_max: 4.1 V
  current_max: 1C
steps:
  - Charge at 1 A to 4.0 V until C/20
  - Rest for 1 min
"""


def test_resolved_steps_carry_the_tighter_limits(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'limits.db'}")
    db.add_battery("cell-7", chemistry="NMC", nominal_capacity_ah=2.0, voltage_max_v=4.2,
                   voltage_min_v=2.8, current_max_charge_a=1.5, current_max_discharge_a=3.0)
    battery = db.battery("cell-7")
    plan = parse_plan(PLAN, "plan.yaml")
    request = TestRequest(ChannelRef(1, SimChannels(), "sim", 0), plan, battery)
    steps, _, _ = Runner.resolve_plan(request, Program.compile(plan), 2.0)
    expected = StepLimits(voltage_max_v=4.1, voltage_min_v=2.8, charge_current_max_a=1.5,
                          discharge_current_max_a=2.0)
    assert {step.limits for step, _ in steps.values()} == {expected}
    unlimited = parse_plan("name: free\nsteps: [Rest for 1 min]\n", "free.yaml")
    steps, _, _ = Runner.resolve_plan(TestRequest(request.channel, unlimited, None),
                                      Program.compile(unlimited), None)
    limits = next(iter(steps.values()))[0].limits
    assert limits is not None and math.isinf(limits.voltage_max_v)

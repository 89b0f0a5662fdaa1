"""External steps: a superior system sets the channel's setpoints, under the test's limits and a
watchdog. The plan language here; the runner on simulated cells and the virtual clock, the
setpoints coming from inside its loop (the runner's observer) as a control API would send them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import TestStatus
from cellbench_core.plan import PlanError, parse_plan
from cellbench_core.plan.model import StepSpec
from cellbench_core.plan.normalise import dump_plan
from cellbench_core.plan.show import show_plan
from cellbench_core.runner import (
    ChannelRef,
    Refusal,
    Runner,
    SetpointRefused,
    TestOutcome,
    TestRequest,
)
from cellbench_core.runner.external import SETPOINT_COLUMNS
from cellbench_core.storage import Database, SampleRows, SampleWriter, open_database
from cellbench_export.bdf import BdfFormat, write_bdf
from cellbench_hal import Step, StepMode, VirtualClock
from cellbench_hal.types import IntArray
from cellbench_sim.channel import SimChannels, SimChannelSettings

PLAN = """\
name: driven
capacity: 2.5 Ah
limits:
  voltage_max: 4.2 V
  current_max: 3 A
steps:
  - external: {watchdog: 5 s, for: 1 h}
  - Rest for 10 s
"""


def test_an_external_step_parses_shows_and_writes_back() -> None:
    plan = parse_plan(PLAN, "plan.yaml")
    step, written_back = plan.steps[0], parse_plan(dump_plan(plan), "normal.yaml").steps[0]
    assert isinstance(step, StepSpec) and isinstance(written_back, StepSpec)
    assert step.external is not None and step.external.watchdog_s == 5.0
    assert step.mode is StepMode.REST and step.line == 7
    assert "External setpoints (watchdog 5 s) for 1 h" in show_plan(plan)
    assert written_back.external == step.external
    assert [(c.quantity, c.op, c.value) for c in written_back.until[0]] == [
        (c.quantity, c.op, c.value) for c in step.until[0]]


@pytest.mark.parametrize(("step", "message"), [
    ("external: {for: 1 h}", "plan.yaml:3: steps[0].external.watchdog: missing: an external "
                             "step needs a watchdog"),
    ("external: {watchdog: 0 s}", "plan.yaml:3: steps[0].external.watchdog: a duration "
                                  "must be positive"),
    ("external: {watchdog: 2 V}", "plan.yaml:3: steps[0].external.watchdog:"),
    ("external: {watchdog: 2 s, current: 1 A}", "plan.yaml:3: steps[0].external.current: "
                                                "unknown key 'current'"),
    ("external: 2 s", "plan.yaml:3: steps[0].external: expected a mapping"),
])
def test_a_bad_external_step_is_refused_where_it_is(step: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(f"name: bad\nsteps:\n  - {step}\n", "plan.yaml")
    assert str(caught.value).startswith(message), str(caught.value)


class SlowToSetCurrents(SimChannels):
    """Simulated channels that take a while (real time) to take a CC setpoint, as an
    instrument on a slow line does: meanwhile the runner's virtual clock runs on."""

    async def apply(self, channel: int, step: Step) -> None:
        if step.mode is StepMode.CC:
            await asyncio.sleep(0.2)
        await super().apply(channel, step)


def _drive(tmp_path: Path, plan_text: str, actions: dict[float, Any],
           keepalive_until_s: float = 0.0, driver_type: type[SimChannels] = SimChannels,
           stop_when_refused: bool = False, **cell: Any
           ) -> tuple[Database, TestOutcome, list[BaseException]]:
    """Run ``plan_text`` on one simulated cell (a ``driver_type``) with 1 s samples; at the
    first sample at or after each test time in ``actions`` send that setpoint (a Step) through
    the runner, and keep the watchdog alive on every sample before ``keepalive_until_s``; with
    ``stop_when_refused``, stop the test at a refusal once its step has ended. Returns the
    database, the outcome and the setpoints' refusals."""
    db = open_database(f"sqlite:///{tmp_path / 'external.db'}")
    clock = VirtualClock()
    writer = SampleWriter(db)
    runner = Runner(db, writer, clock, sample_period_s=1.0)
    driver = driver_type(SimChannelSettings(count=1, capacity_spread=0.0, resistance_spread=0.0,
                                            **cell))
    request = TestRequest(ChannelRef(1, driver, "sim", 0), parse_plan(plan_text, "plan.yaml"))
    pending = sorted(actions.items())
    refused: list[BaseException] = []
    sent: list[asyncio.Task[Step]] = []

    def settled(task: asyncio.Task[Step]) -> None:
        error = task.exception()
        if error is not None:
            refused.append(error)

    def observe(channels: IntArray, batch: SampleRows) -> None:
        t = float(batch.test_time_s[0])
        if batch.step_index[0] != 0:
            if refused and stop_when_refused:
                runner.stop(1, "refused")
            return
        if t < keepalive_until_s:
            runner.keepalive(1)
        while pending and pending[0][0] <= t:
            task = asyncio.ensure_future(runner.set_setpoint(1, pending.pop(0)[1], "bench:7"))
            task.add_done_callback(settled)
            sent.append(task)

    runner.observer = observe

    async def main() -> TestOutcome:
        await driver.open(clock)
        try:
            return (await runner.run([request]))[0]
        finally:
            await driver.close()

    try:
        outcome = asyncio.run(main())
    finally:
        writer.close()
    return db, outcome, refused


def test_setpoints_are_applied_recorded_and_the_watchdog_ends_the_step(tmp_path: Path) -> None:
    db, outcome, refused = _drive(
        tmp_path, PLAN, {10.0: Step(StepMode.CC, current_a=1.0),
                         20.0: Step(StepMode.CC, current_a=5.0),  # beyond current_max 3 A
                         25.0: Step(StepMode.CV, voltage_v=4.0, current_a=0.5)},
        keepalive_until_s=30.0)
    assert outcome.status is TestStatus.FINISHED, outcome.reason
    assert len(refused) == 1 and isinstance(refused[0], SetpointRefused)
    assert refused[0].why is Refusal.OUT_OF_RANGE
    assert "safety limit current_max 3 A" in str(refused[0])
    steps = db.steps(outcome.test_id)
    assert [s.step_index for s in steps] == [0, 1]
    assert "external watchdog: no setpoint or keepalive" in steps[0].end_reason
    # The last keepalive came with the sample at 29 s: the step ends on the first tick more
    # than 5 s later.
    assert 34.0 < steps[0].end_test_time_s <= 35.0
    samples = db.samples(outcome.test_id)
    t, current = samples["test_time_s"], samples["current_a"]
    step = samples["step_index"]
    mode, setpoint = samples["setpoint_mode"], samples["setpoint_current_a"]
    external = step == 0
    assert np.isnan(mode[~external]).all()  # only the external step records setpoints
    before = external & (t < 10.0)
    assert (mode[before] == 0).all() and (current[before] == 0).all()  # at rest until then
    cc = external & (t > 10.0) & (t < 25.0)
    assert (mode[cc] == 1).all() and (setpoint[cc] == 1.0).all()
    assert np.allclose(current[cc], 1.0)  # the refused 5 A changed nothing
    cv = external & (t > 25.0)
    assert (mode[cv] == 2).all() and (samples["setpoint_voltage_v"][cv] == 4.0).all()
    assert (np.abs(current[~external]) == 0).all()  # off after the watchdog, then a rest
    events = db.events(outcome.test_id)
    setpoints = [e for e in events if e.kind == "setpoint"]
    assert [e.message for e in setpoints] == ["bench:7: CC 1 A", "bench:7: CV 4 V 0.5 A"]
    assert setpoints[0].data == {"identity": "bench:7", "mode": "cc", "current_a": 1.0,
                                 "voltage_v": None, "power_w": None}
    assert any(e.kind == "alarm" and "external watchdog" in e.message for e in events)
    exported = tmp_path / "driven.bdf.csv"  # the setpoints leave the station like any column
    assert write_bdf(db, outcome.test_id, exported, BdfFormat.CSV) == len(t)
    header = exported.read_text(encoding="utf-8").splitlines()[0]
    # Every column the test has values of (it set no power).
    assert all(f'"{name}"' in header for name in SETPOINT_COLUMNS[:3]), header
    db.close()


def test_the_limits_trip_and_the_end_conditions_end_an_external_step(tmp_path: Path) -> None:
    tripping = PLAN.replace("voltage_max: 4.2 V", "voltage_max: 3.9 V")
    db, outcome, refused = _drive(tmp_path, tripping, {2.0: Step(StepMode.CC, current_a=3.0)},
                                  keepalive_until_s=1e9)
    assert not refused
    assert outcome.status is TestStatus.STOPPED
    assert outcome.reason.startswith("safety limit voltage_max 3.9 V: measured")
    db.close()
    ending = PLAN.replace("{watchdog: 5 s, for: 1 h}",
                          "{watchdog: 5 s, until: voltage >= 3.85 V}")
    (tmp_path / "external.db").unlink()
    db, outcome, refused = _drive(tmp_path, ending, {2.0: Step(StepMode.CC, current_a=3.0)},
                                  keepalive_until_s=1e9)
    assert outcome.status is TestStatus.FINISHED and not refused
    steps = db.steps(outcome.test_id)
    assert steps[0].end_reason == "voltage >= 3.85 V" and steps[1].step_index == 1
    db.close()


def test_setpoints_outside_an_external_step_are_refused(tmp_path: Path) -> None:
    plan = "name: plain\nsteps:\n  - Rest for 5 s\n  - external: {watchdog: 2 s, for: 4 s}\n"
    db, outcome, refused = _drive(tmp_path, plan, {1.0: Step(StepMode.CC, current_a=1.0)})
    assert outcome.status is TestStatus.FINISHED
    assert len(refused) == 1 and isinstance(refused[0], SetpointRefused)
    assert refused[0].why is Refusal.NOT_EXTERNAL
    assert "not in an external step (step: Rest for 5 s)" in str(refused[0])
    db.close()


def test_a_setpoint_that_races_the_end_of_its_step_is_undone(tmp_path: Path) -> None:
    plan = ("name: raced\nsteps:\n  - external: {watchdog: 5 s, for: 1 h}\n"
            "  - Rest for 1000 h\n")
    db, outcome, refused = _drive(tmp_path, plan, {1.0: Step(StepMode.CC, current_a=1.0)},
                                  driver_type=SlowToSetCurrents, stop_when_refused=True)
    assert outcome.status is TestStatus.STOPPED and outcome.reason == "refused"
    assert len(refused) == 1 and isinstance(refused[0], SetpointRefused)
    assert refused[0].why is Refusal.NOT_EXTERNAL
    assert "ended or paused while the setpoint was being applied; it was undone" in str(
        refused[0])
    samples = db.samples(outcome.test_id, ["step_index", "current_a"])
    rest = samples["step_index"] == 1
    assert rest.any() and (samples["current_a"][rest][-1] == 0.0)  # the rest again, not 1 A
    assert not [e for e in db.events(outcome.test_id) if e.kind == "setpoint"]
    db.close()

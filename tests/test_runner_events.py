"""Runner behaviour around events: lifecycle hooks (and plugins that raise or are slow), device
failures and timeouts, stop requests, several samples per channel in one batch."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import Alarm, StepChanged, TestFinished, TestStarted, TestStatus
from cellbench_core.hookspecs import hookimpl
from cellbench_core.plan import parse_plan
from cellbench_core.plugins import PluginManager
from cellbench_core.runner import ChannelRef, RunError, Runner, TestOutcome, TestRequest
from cellbench_core.storage import (
    BatteryRecord,
    Database,
    SampleWriter,
    StorageError,
    open_database,
)
from cellbench_hal import (
    ChannelDriver,
    ChannelInfo,
    Clock,
    DeviceTimeout,
    OutOfRange,
    SampleBatch,
    Step,
    VirtualClock,
)
from cellbench_sim.channel import SimChannels, SimChannelSettings

PLAN = """
name: two steps
capacity: 2.5 Ah
limits: {voltage_max: 4.25 V}
steps:
  - Charge at 1C for 10 minutes
  - Discharge at 1C for 10 minutes
"""


class Recorder:
    """A plugin that records every lifecycle event."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def cellbench_test_started(self, event: TestStarted) -> None:
        self.events.append(event)

    @hookimpl
    def cellbench_step_changed(self, event: StepChanged) -> None:
        self.events.append(event)

    @hookimpl
    def cellbench_test_finished(self, event: TestFinished) -> None:
        self.events.append(event)

    @hookimpl
    def cellbench_alarm(self, event: Alarm) -> None:
        self.events.append(event)


class Raising:
    """A notifier whose deliveries fail."""

    @hookimpl
    def cellbench_test_started(self, event: TestStarted) -> None:
        raise RuntimeError("mail server down")

    @hookimpl
    def cellbench_alarm(self, event: Alarm) -> None:
        raise ConnectionError("pager unreachable")


class Slow:
    """A notifier that holds on to a test's start until the test has ended (at most 30 s), then
    sleeps 0.5 s more: events still undelivered when the runner would return without draining
    them."""

    def __init__(self) -> None:
        self.ended = threading.Event()
        self.saw_the_end = False

    @hookimpl
    def cellbench_test_started(self, event: TestStarted) -> None:
        self.saw_the_end = self.ended.wait(30.0)
        time.sleep(0.5)


class Wrapped(ChannelDriver):
    """A simulated bank whose measure() misbehaves on request."""

    virtual_time_ok = True
    name = "flaky"

    def __init__(self, count: int, fail_after: int | None = None, hang: bool = False,
                 repeat: bool = False) -> None:
        self.inner = SimChannels(SimChannelSettings(count=count, capacity_spread=0.0,
                                                    resistance_spread=0.0))
        self.fail_after, self.hang, self.repeat = fail_after, hang, repeat
        self.calls = 0
        self.off: list[int] = []

    @property
    def channels(self) -> Sequence[ChannelInfo]:
        return self.inner.channels

    async def open(self, clock: Clock) -> None:
        await self.inner.open(clock)

    async def close(self) -> None:
        await self.inner.close()

    async def apply(self, channel: int, step: Step) -> None:
        await self.inner.apply(channel, step)

    async def output_off(self, channel: int) -> None:
        self.off.append(channel)
        await self.inner.output_off(channel)

    async def measure(self) -> SampleBatch:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            if self.hang:
                await asyncio.sleep(3600)
            raise DeviceTimeout(self.name, "no answer on the bus")
        batch = await self.inner.measure()
        if not self.repeat:
            return batch
        # Report every sample twice: an older copy 0.5 s earlier, then the current one.
        def twice(a: np.ndarray, shift: float | None = None) -> np.ndarray:
            return np.concatenate([a if shift is None else a - shift, a])
        return SampleBatch(twice(batch.channel), twice(batch.time_s, 0.5),
                           twice(batch.voltage_v), twice(batch.current_a),
                           twice(batch.temperature_c))


def execute(tmp_path: Path, drivers: list[ChannelDriver], *, hooks: Any = None,
            stop_after_ticks: int | None = None, timeout_s: float = 5.0, **options: Any
            ) -> tuple[Database, list[TestOutcome]]:
    db = open_database(f"sqlite:///{tmp_path / 'events.db'}")
    clock = VirtualClock()
    writer = SampleWriter(db)
    runner = Runner(db, writer, clock, sample_period_s=1.0, hooks=hooks,
                    device_timeout_s=timeout_s, **options)
    plan = parse_plan(PLAN, "events.yaml")
    refs = [ChannelRef(number, d, "flaky", n) for number, (d, n) in enumerate(
        ((d, n) for d in drivers for n in range(len(d.channels))), start=1)]

    async def main() -> list[TestOutcome]:
        for d in drivers:
            await d.open(clock)
        task = asyncio.create_task(runner.run([TestRequest(r, plan) for r in refs]))
        if stop_after_ticks is not None:
            while runner.ticks < stop_after_ticks:
                await asyncio.sleep(0)
            runner.stop(reason="operator pressed stop")
        outcomes = await task
        for d in drivers:
            await d.close()
        return outcomes

    try:
        return db, asyncio.run(main())
    finally:
        writer.close()


def test_lifecycle_hooks_are_called_in_order(tmp_path: Path) -> None:
    manager = PluginManager()
    recorder = Recorder()
    assert manager.register("recorder", recorder) == ""
    _, outcomes = execute(tmp_path, [Wrapped(1)], hooks=manager.hook)
    kinds = [type(e).__name__ for e in recorder.events]
    assert kinds == ["TestStarted", "StepChanged", "StepChanged", "TestFinished"]
    first, second = recorder.events[1], recorder.events[2]
    assert (first.step_index, first.plan_line) == (0, 6)
    assert (second.step_index, second.plan_line) == (1, 7)
    assert second.test_time_s == pytest.approx(600.0)
    assert recorder.events[-1].status is TestStatus.FINISHED
    assert outcomes[0].reason == "plan complete"


def test_a_raising_or_slow_plugin_neither_stalls_nor_fails_the_test(tmp_path: Path) -> None:
    manager = PluginManager()
    recorder, slow = Recorder(), Slow()
    for name, plugin in (("raising", Raising()), ("slow", slow), ("recorder", recorder)):
        assert manager.register(name, plugin) == ""

    def on_event(event: object) -> None:  # on the event loop, as the runner ends the test
        if isinstance(event, TestFinished):
            slow.ended.set()

    db, outcomes = execute(tmp_path, [Wrapped(1, fail_after=1000)], hooks=manager.hook,
                           on_event=on_event, events_timeout_s=60.0)
    # The device failed at tick 1001 (an alarm), as it would have without these plugins.
    assert outcomes[0].status is TestStatus.FAILED
    assert outcomes[0].reason == "device error: flaky: no answer on the bus"
    # All 1,001 ticks ran while the slow plugin held on to the test's start...
    assert slow.saw_the_end
    # ...and run() returned once every plugin had every event (drained at the end).
    assert [type(e).__name__ for e in recorder.events] == [
        "TestStarted", "StepChanged", "StepChanged", "Alarm", "TestFinished"]
    failed = [e for e in db.events(outcomes[0].test_id) if e.kind == "hook_failed"]
    assert [(e.channel, e.data["plugin"], e.data["hook"], e.data["error"]) for e in failed] == [
        ("1", "raising", "cellbench_test_started", "RuntimeError: mail server down"),
        ("1", "raising", "cellbench_alarm", "ConnectionError: pager unreachable")]
    assert failed[0].message == ("plugin raising: cellbench_test_started raised RuntimeError: "
                                 "mail server down")


def test_a_failing_device_fails_only_its_own_channels(tmp_path: Path) -> None:
    manager = PluginManager()
    recorder = Recorder()
    manager.register("recorder", recorder)
    flaky, healthy = Wrapped(2, fail_after=100), Wrapped(1)
    db, outcomes = execute(tmp_path, [flaky, healthy], hooks=manager.hook)
    assert [o.status for o in outcomes] == [TestStatus.FAILED, TestStatus.FAILED,
                                           TestStatus.FINISHED]
    assert "no answer on the bus" in outcomes[0].reason
    assert sorted(flaky.off) == [0, 1]  # both outputs switched off
    alarms = [e for e in recorder.events if isinstance(e, Alarm)]
    assert [a.channel for a in alarms] == ["1", "2"]
    for outcome in outcomes[:2]:  # no sample after the failure, none lost before it
        seq = db.samples(outcome.test_id)["seq"]
        assert np.array_equal(seq, np.arange(1, 101))
    assert db.test(outcomes[0].test_id).status == "failed"  # type: ignore[union-attr]


def test_a_device_that_hangs_times_out(tmp_path: Path) -> None:
    _, outcomes = execute(tmp_path, [Wrapped(1, fail_after=5, hang=True)], timeout_s=0.2)
    assert outcomes[0].status is TestStatus.FAILED
    assert "measure did not answer within 0.2 s" in outcomes[0].reason


def test_stop_request_ends_every_test_safely(tmp_path: Path) -> None:
    driver = Wrapped(3)
    db, outcomes = execute(tmp_path, [driver], stop_after_ticks=50)
    assert {o.status for o in outcomes} == {TestStatus.STOPPED}
    assert {o.reason for o in outcomes} == {"operator pressed stop"}
    assert sorted(driver.off) == [0, 1, 2]
    steps = db.steps(outcomes[0].test_id)
    assert steps[-1].end_reason == "operator pressed stop"
    assert steps[-1].end_seq == len(db.samples(outcomes[0].test_id)["seq"])


def test_several_samples_of_a_channel_in_one_batch_are_handled_in_order(
        tmp_path: Path) -> None:
    db, outcomes = execute(tmp_path, [Wrapped(2, repeat=True)])
    assert {o.status for o in outcomes} == {TestStatus.FINISHED}
    data = db.samples(outcomes[0].test_id)
    assert np.array_equal(data["seq"], np.arange(1, len(data["seq"]) + 1))
    assert np.all(np.diff(data["test_time_s"]) > 0)


class Banked(Wrapped):
    """A bank that takes many channels' steps at once (``apply_bank``), and refuses on
    request: the whole bank call hangs, or the bank call fails as the one channel in ``refuse``
    does on its own."""

    def __init__(self, count: int, refuse: int | None = None, hang: bool = False) -> None:
        super().__init__(count)
        self.refuse, self.hang_bank = refuse, hang
        self.banks: list[list[int]] = []
        self.single: list[int] = []

    async def apply_bank(self, steps: Sequence[tuple[int, Step]]) -> None:
        self.banks.append([channel for channel, _ in steps])
        if self.hang_bank:
            await asyncio.sleep(3600)
        if self.refuse is not None and any(channel == self.refuse for channel, _ in steps):
            raise OutOfRange(self.name, f"channel {self.refuse} refuses")
        await self.inner.apply_bank(steps)

    async def apply(self, channel: int, step: Step) -> None:
        self.single.append(channel)
        if channel == self.refuse:
            raise OutOfRange(self.name, f"channel {channel} refuses")
        await self.inner.apply(channel, step)


def test_first_steps_go_to_a_bank_at_once_and_a_refusal_fails_only_its_channel(
        tmp_path: Path) -> None:
    fine, refusing = Banked(3), Banked(3, refuse=1)
    _, outcomes = execute(tmp_path, [fine, refusing])
    assert fine.banks == [[0, 1, 2]]
    # The refused bank call is followed by one apply per channel, to learn which refused.
    assert refusing.banks == [[0, 1, 2]] and refusing.single[:3] == [0, 1, 2]
    by_channel = {o.channel: o for o in outcomes}
    assert by_channel["5"].status is TestStatus.FAILED
    assert by_channel["5"].reason == "device error: flaky: channel 1 refuses"
    assert {c for c, o in by_channel.items() if o.status is TestStatus.FINISHED} == {
        "1", "2", "3", "4", "6"}


def test_a_bank_that_does_not_answer_fails_its_tests_without_asking_each_channel(
        tmp_path: Path) -> None:
    hanging = Banked(2, hang=True)
    _, outcomes = execute(tmp_path, [hanging], timeout_s=0.2)
    assert hanging.single == []
    assert [o.status for o in outcomes] == [TestStatus.FAILED] * 2
    assert all(o.reason.startswith("device error: flaky: apply did not answer within 0.2 s")
               for o in outcomes)


class BankedOff(Wrapped):
    """A bank that switches many outputs off at once (``output_off_bank``); the bank call
    fails as the one channel in ``refuse`` does on its own."""

    def __init__(self, count: int, refuse: int | None = None) -> None:
        super().__init__(count)
        self.refuse = refuse
        self.off_banks: list[list[int]] = []

    async def output_off_bank(self, channels: Sequence[int]) -> None:
        self.off_banks.append(list(channels))
        if self.refuse in channels:
            raise OutOfRange(self.name, f"channel {self.refuse} stays on")
        await self.inner.output_off_bank(channels)

    async def output_off(self, channel: int) -> None:
        if channel == self.refuse:
            raise OutOfRange(self.name, f"channel {channel} stays on")
        await super().output_off(channel)


def test_a_stop_switches_a_bank_off_at_once_and_a_refusal_fails_only_its_channel(
        tmp_path: Path) -> None:
    fine, refusing, plain = BankedOff(3), BankedOff(3, refuse=2), Wrapped(2)
    _, outcomes = execute(tmp_path, [fine, refusing, plain], stop_after_ticks=2)
    assert fine.off_banks == [[0, 1, 2]] and fine.off == []
    # The refused bank call is followed by one output_off per channel, to learn which refused.
    assert refusing.off_banks == [[0, 1, 2]] and refusing.off == [0, 1]
    assert plain.off == [0, 1]  # a driver without the bank call: one channel at a time
    by_channel = {o.channel: o for o in outcomes}
    assert by_channel["6"].status is TestStatus.FAILED
    assert by_channel["6"].reason == ("operator pressed stop; switching the output off failed: "
                                      "flaky: channel 2 stays on")
    assert {c for c, o in by_channel.items() if o.status is TestStatus.STOPPED} == {
        "1", "2", "3", "4", "5", "7", "8"}


def test_a_start_the_runner_refuses_leaves_no_test_in_the_database(tmp_path: Path) -> None:
    """The database writes a start's rows while the runner checks the tests: a start the
    runner refuses (a channel twice) is rolled back, and one the database refuses (no such
    battery) starts nothing."""
    db = open_database(f"sqlite:///{tmp_path / 'refused.db'}")
    clock = VirtualClock()
    writer = SampleWriter(db)
    plan = parse_plan(PLAN, "events.yaml")
    bank = Wrapped(2)
    ref = ChannelRef(1, bank, "flaky", 0)

    async def main() -> None:
        await bank.open(clock)
        runner = Runner(db, writer, clock, sample_period_s=1.0)
        with pytest.raises(RunError, match="a channel appears twice"):
            await runner.run([TestRequest(ref, plan), TestRequest(ref, plan)])
        ghost = BatteryRecord(7, "ghost", "nmc", 2.5, 3.6, None, None, None, None, None, {},
                              0.0)
        runner = Runner(db, writer, clock, sample_period_s=1.0)
        with pytest.raises(StorageError, match="no battery named 'ghost'"):
            await runner.run([TestRequest(ref, plan, battery=ghost)])
        assert runner.snapshot() == [] and bank.off == []
        await bank.close()

    try:
        asyncio.run(main())
    finally:
        writer.close()
    assert db.tests() == []

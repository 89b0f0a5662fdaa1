"""The station's control API (StationControl) on a real serving station: simulated channels,
a virtual clock, a SQLite database; every refusal changes nothing."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.events import TestStatus
from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.service.control import (
    ChannelState,
    ControlError,
    ControlErrorKind,
    LiveSample,
    StationControl,
)
from cellbench_core.station import Station, StationError, station_from_dict
from cellbench_core.storage import Database, open_database
from cellbench_core.storage.queue import QueueStatus, TestQueue
from cellbench_hal import VirtualClock

PLANS = {
    "charge.yaml": """\
name: charge
capacity: 2.5 Ah
steps:
  - Charge at 0.5C for 10 minutes
  - Rest for 2 minutes
""",
    "rest-then-charge.yaml": """\
name: rest-then-charge
capacity: 2.5 Ah
steps:
  - Rest for 100 hours
  - Charge at 0.2C for 10 hours
""",
    "broken.yaml": """\
name: broken
steps:
  - Charge at 1 A for 1 minute
    until: voltage >= 4.2 V
""",
    "too-much.yaml": """\
name: too-much
steps:
  - Charge at 500 A for 1 minute
""",
}
PATIENCE_S = 60.0  # real seconds; never reached when it works


@pytest.fixture
def station_dir(tmp_path: Path) -> Path:
    plans = tmp_path / "plans"
    plans.mkdir()
    for name, text in PLANS.items():
        (plans / name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path / 'control.db'}")
    yield database
    database.close()


def make_service(db: Database, base: Path, channels: int = 3, ring_size: int = 1000,
                 interfaces: list[Any] | None = None) -> StationService:
    config = station_from_dict({
        "station": {"name": "ctl", "database": db.url, "sample_period": "10 s",
                    "queue_poll_interval": "0.02 s", "ring_size": ring_size},
        "channels": [{"driver": "sim", "settings": {"count": channels, "seed": 5}}],
    })
    manager = PluginManager()
    manager.load()
    station = Station(config, manager, base_dir=base)
    station.interfaces = [("probe", i) for i in interfaces or []]
    return StationService(station, db, VirtualClock(), manager.hook, version="9.9")


def drive(service: StationService,
          scenario: Callable[[StationControl], Awaitable[None]]) -> None:
    """Serve, run ``scenario`` on the ready station's control API, then shut down."""

    async def main() -> None:
        task = asyncio.create_task(service.serve())
        await asyncio.wait({task, asyncio.create_task(service.ready.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        assert service.control is not None and not task.done()
        try:
            await asyncio.wait_for(scenario(service.control), PATIENCE_S)
        finally:
            service.shutdown()
            await task

    asyncio.run(main())


async def samples_of(control: StationControl, channel: int, n: int) -> list[LiveSample]:
    """Wait for the next ``n`` samples of ``channel`` (through a subscription)."""
    got: list[LiveSample] = []
    enough = asyncio.Event()

    def take(sample: LiveSample) -> None:
        got.append(sample)
        if len(got) >= n:
            enough.set()

    subscription = control.subscribe(channel, take)
    try:
        await enough.wait()
    finally:
        subscription.close()
    return got[:n]


def test_pause_holds_the_step_and_resume_goes_on(db: Database, station_dir: Path,
                                                 wait_until_async: Callable[..., Any]) -> None:
    service = make_service(db, station_dir)
    seen: dict[str, Any] = {}

    async def scenario(control: StationControl) -> None:
        test_id = await control.start(1, "charge", identity="tester")
        seen["test"] = test_id
        await samples_of(control, 1, 5)
        control.pause(1, identity="tester")
        assert control.channel(1).state is ChannelState.PAUSED
        await samples_of(control, 1, 2)  # the pause is applied at a tick
        seen["paused"] = await samples_of(control, 1, 20)
        assert control.channel(1).state is ChannelState.PAUSED
        control.resume(1, identity="tester")
        assert control.channel(1).state is ChannelState.RUNNING
        await wait_until_async(lambda: control.channel(1).state, "channel 1 to be idle",
                               check=lambda state: state is ChannelState.IDLE, interval=0.001)

    drive(service, scenario)
    test_id = seen["test"]
    assert db.test(test_id).status is TestStatus.FINISHED
    paused = seen["paused"]
    assert all(abs(s.current_a) < 1e-9 for s in paused)  # output off
    step_times = db.samples(test_id, ["seq", "step_time_s", "step_index"])
    held = np.isin(step_times["seq"], [s.seq for s in paused])
    assert len(set(step_times["step_time_s"][held].tolist())) == 1  # the step's time stood still
    charge = db.steps(test_id)[0]
    assert charge.end_reason == "step_time >= 600 s"
    # the charge ran its 10 minutes of step time, and the pause came on top of them
    assert charge.end_test_time_s - charge.start_test_time_s >= 600 + 20 * 10 - 10
    assert abs(charge.ah - 0.5 * 2.5 * 600 / 3600) < 0.02
    events = [e for e in db.events(test_id) if e.kind == "control"]
    assert [e.message for e in events] == [f"tester: START 1 charge: test {test_id}",
                                           "tester: PAUSE 1", "tester: RESUME 1"]


def test_next_ends_the_step_and_stop_ends_the_test(db: Database, station_dir: Path,
                                                   wait_until_async: Callable[..., Any]) -> None:
    service = make_service(db, station_dir)
    seen: dict[str, int] = {}

    async def scenario(control: StationControl) -> None:
        seen["test"] = await control.start(2, "rest-then-charge", identity="lims")
        await samples_of(control, 2, 3)
        control.next_step(2, identity="lims")
        await wait_until_async(lambda: control.channel(2).step_no, "step 2 on channel 2",
                               check=lambda step: step == 2, interval=0.001)
        after = await samples_of(control, 2, 2)
        assert all(s.step_index == 1 and s.current_a > 0 for s in after)
        control.stop(2, identity="lims")
        await wait_until_async(lambda: control.channel(2).state, "channel 2 to be idle",
                               check=lambda state: state is ChannelState.IDLE, interval=0.001)

    drive(service, scenario)
    test = db.test(seen["test"])
    assert test.status is TestStatus.STOPPED and "stopped by lims" in test.end_reason
    steps = db.steps(seen["test"])
    assert steps[0].end_reason == "next step by operator"
    assert steps[0].end_test_time_s < 3600  # not the 100 hours


def test_a_starting_channel_runs_while_its_rows_are_written(
        db: Database, station_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner writes a start's rows in a worker thread: while it waits for them, the channel
    counts as running, and the generation moves once it is placed (a reader that caches state
    by generation, as rci does, sees the running test after)."""
    service = make_service(db, station_dir)
    writing, go_on = threading.Event(), threading.Event()
    start_tests = db.start_tests

    def slow_start_tests(*args: Any, **kwargs: Any) -> list[int]:
        writing.set()
        go_on.wait(PATIENCE_S)
        return start_tests(*args, **kwargs)

    monkeypatch.setattr(db, "start_tests", slow_start_tests)

    async def scenario(control: StationControl) -> None:
        started = asyncio.ensure_future(control.start(1, "charge", identity="tester"))
        await asyncio.to_thread(writing.wait, PATIENCE_S)
        try:
            assert control.channel(1).state is ChannelState.RUNNING
            during = control.generation
        finally:
            go_on.set()
        await started
        assert control.generation != during
        assert control.channel(1).state is ChannelState.RUNNING

    drive(service, scenario)


def test_refused_requests_change_nothing(db: Database, station_dir: Path) -> None:
    service = make_service(db, station_dir)
    db.add_battery("small", "NMC", 2.5, current_max_charge_a=1.0)

    async def refused(kind: ControlErrorKind, call: Awaitable[Any] | Callable[[], Any],
                      *words: str) -> None:
        with pytest.raises(ControlError) as caught:
            if callable(call):
                call()
            else:
                await call
        assert caught.value.kind is kind, caught.value
        for word in words:
            assert word in caught.value.message

    async def scenario(control: StationControl) -> None:
        who = {"identity": "x"}
        await refused(ControlErrorKind.IDLE, lambda: control.stop(1, **who), "channel 1")
        await refused(ControlErrorKind.IDLE, lambda: control.pause(1, **who))
        await refused(ControlErrorKind.IDLE, lambda: control.next_step(1, **who))
        await refused(ControlErrorKind.NO_SUCH_CHANNEL, lambda: control.channel(4), "1-3")
        await refused(ControlErrorKind.NO_SUCH_CHANNEL, control.start(0, "charge", **who))
        await refused(ControlErrorKind.NO_SUCH_PLAN, control.start(1, "nope", **who), "nope")
        await refused(ControlErrorKind.NO_SUCH_PLAN, control.start(1, "../control", **who))
        await refused(ControlErrorKind.BAD_PLAN, control.start(1, "broken", **who),
                      "broken.yaml:4")
        await refused(ControlErrorKind.BAD_PLAN, control.start(1, "too-much", **who),
                      "500 A")
        await refused(ControlErrorKind.NO_SUCH_BATTERY,
                      control.start(1, "charge", "ghost", **who), "ghost")
        await refused(ControlErrorKind.BAD_PLAN, control.start(1, "charge", "small", **who),
                      "current")  # 0.5C of 2.5 Ah is beyond the battery's 1 A
        assert db.tests() == []
        await control.start(1, "charge", **who)
        await refused(ControlErrorKind.BUSY, control.start(1, "charge", **who))
        await refused(ControlErrorKind.NOT_PAUSED, lambda: control.resume(1, **who))
        control.pause(1, **who)
        await refused(ControlErrorKind.PAUSED, lambda: control.pause(1, **who))
        await refused(ControlErrorKind.BAD_VALUE, lambda: control.last_samples(1, 0))
        await refused(ControlErrorKind.BAD_VALUE, lambda: control.last_samples(1, 1001))
        await refused(ControlErrorKind.EXISTS,
                      control.add_battery("small", "LFP", 1.0, **who))
        await refused(ControlErrorKind.BAD_VALUE,
                      control.add_battery("odd", "LFP", 1.0, voltage_min_v=3.0,
                                          voltage_max_v=2.0, **who))
        await refused(ControlErrorKind.NO_SUCH_ENTRY, control.queue_cancel(99, **who))
        await refused(ControlErrorKind.NO_SUCH_BATTERY,
                      control.edit_battery("ghost", {"chemistry": "LFP"}, **who), "ghost")
        await refused(ControlErrorKind.BAD_VALUE,
                      control.edit_battery("small", {"voltage_min_v": 5.0,
                                                     "voltage_max_v": 4.0}, **who),
                      "voltage_min_v (5.0 V) must be below voltage_max_v (4.0 V)")
        assert (await control.battery("small")).voltage_max_v is None
        edited = await control.edit_battery("small", {"current_max_charge_a": 2.0}, **who)
        assert edited.current_max_charge_a == 2.0
        await control.start(2, "charge", "small", **who)  # 0.5C of 2.5 Ah fits 2 A now
        assert (control.channel(2).battery, control.channel(2).chamber) == ("small", None)
        assert control.channel(1).battery is None
        assert [b.name for b in await control.batteries()] == ["small"]
        assert await control.queue_entries() == []
        assert len(db.tests()) == 2

    drive(service, scenario)


def test_ring_buffer_and_subscriptions_match_the_database(db: Database,
                                                          station_dir: Path) -> None:
    service = make_service(db, station_dir, ring_size=7)
    seen: dict[str, Any] = {}

    async def scenario(control: StationControl) -> None:
        assert control.last_samples(3, 5) == []
        seen["test"] = await control.start(3, "charge", identity="x")
        pushed = await samples_of(control, 3, 30)
        ring = control.last_samples(3, 7)
        seen["pushed"], seen["ring"] = pushed, ring
        assert [s.seq for s in control.last_samples(3, 3)] == [s.seq for s in ring[-3:]]

    drive(service, scenario)
    pushed, ring = seen["pushed"], seen["ring"]
    seqs = [s.seq for s in pushed]
    assert seqs == list(range(seqs[0], seqs[0] + 30))  # no gaps, in order
    assert [s.seq for s in ring] == list(range(ring[-1].seq - 6, ring[-1].seq + 1))
    stored = db.samples(seen["test"], ["seq", "voltage_v", "current_a", "test_time_s"])
    by_seq = {int(s): i for i, s in enumerate(stored["seq"])}
    for sample in pushed + ring:
        i = by_seq[sample.seq]
        assert sample.test_id == seen["test"] and sample.channel == 3
        assert sample.voltage_v == stored["voltage_v"][i]
        assert sample.current_a == stored["current_a"][i]
        assert sample.test_time_s == pytest.approx(stored["test_time_s"][i])


def test_queue_waits_for_a_channel_an_interface_started(
        db: Database, station_dir: Path, wait_until_async: Callable[..., Any]) -> None:
    service = make_service(db, station_dir)
    queue = TestQueue(db)
    seen: dict[str, int] = {}

    async def scenario(control: StationControl) -> None:
        seen["direct"] = await control.start(1, "rest-then-charge", identity="x")
        seen["entry"] = await control.queue_add(1, "charge", identity="x")
        assert (await control.queue_entries())[0].status is QueueStatus.QUEUED
        await samples_of(control, 1, 3)
        entry = queue.entry(seen["entry"])
        assert entry is not None and entry.status is QueueStatus.QUEUED  # channel 1 is busy
        second = await control.queue_add(1, "charge", identity="x")
        await control.queue_cancel(second, identity="x")
        with pytest.raises(ControlError) as caught:
            await control.queue_cancel(second, identity="x")
        assert caught.value.kind is ControlErrorKind.NOT_CANCELLABLE
        control.stop(1, identity="x")  # now the queued entry gets the channel
        await wait_until_async(lambda: queue.entry(seen["entry"]).status,
                               "the queue entry to finish",
                               check=lambda status: status is QueueStatus.FINISHED,
                               interval=0.001)

    drive(service, scenario)
    assert db.test(seen["direct"]).status is TestStatus.STOPPED
    entry = queue.entry(seen["entry"])
    assert entry.test_id is not None and entry.test_id != seen["direct"]


class Probe:
    """An interface that records how the station drives it."""

    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log, self.fail = log, fail

    async def start(self, control: StationControl) -> str:
        self.log.append(f"start {control.name} {control.version} {len(control.channel_numbers())}")
        if self.fail:
            raise OSError("address already in use")
        return "probe on port 1"

    async def stop(self) -> None:
        self.log.append("stop")


def test_interfaces_start_before_the_ready_line_and_stop_first(
        db: Database, station_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    service = make_service(db, station_dir, interfaces=[Probe(calls)])

    async def scenario(control: StationControl) -> None:
        assert calls == ["start ctl 9.9 3"]
        await control.start(1, "rest-then-charge", identity="x")
        await samples_of(control, 1, 1)

    with caplog.at_level(logging.INFO):
        drive(service, scenario)
    assert calls == ["start ctl 9.9 3", "stop"]
    ready = [r.getMessage() for r in caplog.records if "ready" in r.getMessage()]
    assert ready and ready[0].endswith("interfaces: probe on port 1")
    with pytest.raises(ControlError) as caught:
        service.control.pause(1, identity="late")
    assert caught.value.kind is ControlErrorKind.UNAVAILABLE


def test_an_interface_that_cannot_start_stops_the_station(db: Database,
                                                          station_dir: Path) -> None:
    calls: list[str] = []
    service = make_service(db, station_dir, interfaces=[Probe(calls), Probe(calls, fail=True)])
    with pytest.raises(StationError, match=r"interfaces\[1\] \(probe\) did not start: "
                                           "address already in use"):
        asyncio.run(service.serve())
    assert calls == ["start ctl 9.9 3", "start ctl 9.9 3", "stop"]


def test_station_file_interface_sections_are_checked() -> None:
    manager = PluginManager()
    manager.load()
    config = station_from_dict({"interfaces": [{"kind": "no-such-interface"}]})
    with pytest.raises(StationError, match=r"^<station>: interfaces\[0\]\.kind: no interface "
                                           "called 'no-such-interface'"):
        Station(config, manager)
    with pytest.raises(StationError, match=r"interfaces\[0\]\.settings"):
        station_from_dict({"interfaces": [{"kind": "rci", "settings": 3}]})
    with pytest.raises(StationError, match=r"station\.ring_size"):
        station_from_dict({"station": {"ring_size": 0}})

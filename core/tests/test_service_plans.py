"""A serving station parses, checks, compiles and resolves the plans it is handed (queue rows,
interface starts) off its event loop: a huge plan never costs a running test a sample."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import open_database
from cellbench_core.storage.queue import QueueStatus, TestQueue
from cellbench_hal import VirtualClock

PERIOD_S = 1.0
#: Thousands of steps: seconds of parsing and checking, many sample periods at this speed.
HUGE = "name: huge\nsteps:\n" + "  - Rest for 1 s\n" * 8_000


def test_a_huge_plan_queued_and_started_costs_a_running_test_no_sample(tmp_path: Path) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "huge.yaml").write_text(HUGE, encoding="utf-8")
    (tmp_path / "plans" / "resting.yaml").write_text(
        "name: resting\nsteps:\n  - Rest for 1000 hours\n", encoding="utf-8")
    db = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    config = station_from_dict({
        "station": {"name": "svc", "database": db.url, "sample_period": f"{PERIOD_S} s",
                    "queue_poll_interval": "0.05 s"},
        "channels": [{"driver": "sim", "settings": {"count": 3, "seed": 3}}]})
    manager = PluginManager()
    manager.load()
    # Two sample periods a second: a plan parsed on the loop would leave gaps of several.
    service = StationService(Station(config, manager, base_dir=tmp_path), db,
                             VirtualClock(speed=2), manager.hook)
    queue = TestQueue(db)

    async def main() -> tuple[int, int]:
        serving = asyncio.create_task(service.serve())
        await service.ready.wait()
        assert service.control is not None
        running = await service.control.start(1, "resting", identity="test")
        entry = await asyncio.to_thread(queue.add, 2, HUGE, plan_source="huge.yaml")
        started = await service.control.start(3, "huge", identity="test")
        while (await asyncio.to_thread(queue.entry, entry)).status is QueueStatus.QUEUED:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        ticks = service.runner.ticks
        while service.runner.ticks < ticks + 5:  # the huge tests run a few ticks too
            await asyncio.sleep(0.05)
        service.shutdown()
        await serving
        return running, started

    try:
        running, started = asyncio.run(main())
        times = db.samples(running, ["test_time_s"])["test_time_s"]
        gaps = np.diff(times)
        assert len(gaps) >= 5
        assert gaps.max() < 2.5 * PERIOD_S, f"largest gap between samples: {gaps.max()} s"
        assert len(db.samples(started, ["seq"])["seq"]) > 0
        assert [e.status for e in queue.entries()] == [QueueStatus.STOPPED]
    finally:
        db.close()

"""A plan run end to end in this process: the runner on simulated cells and the virtual clock,
its data in a SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.plan import load_plan, parse_plan
from cellbench_core.plan.tables import TableLoader
from cellbench_core.runner import ChannelRef, Runner, TestOutcome, TestRequest
from cellbench_core.storage import Database, SampleWriter, StepRecord, open_database
from cellbench_hal import SampleBatch, VirtualClock
from cellbench_sim.chamber import SimChamber
from cellbench_sim.channel import SimChannels, SimChannelSettings


@dataclass
class SimRun:
    """A finished run: its database, the outcome of each channel's test, and what the channels
    measured one sample period after the run had ended."""

    db: Database
    outcomes: list[TestOutcome]
    after: SampleBatch

    @property
    def outcome(self) -> TestOutcome:
        """The first channel's outcome."""
        return self.outcomes[0]

    @property
    def steps(self) -> list[StepRecord]:
        """The first channel's steps."""
        return self.steps_of(0)

    @property
    def samples(self) -> dict[str, np.ndarray]:
        """The first channel's samples."""
        return self.samples_of(0)

    def steps_of(self, channel: int) -> list[StepRecord]:
        """The steps of the test on channel ``channel`` (from 0)."""
        return self.db.steps(self.outcomes[channel].test_id)

    def samples_of(self, channel: int) -> dict[str, np.ndarray]:
        """The samples of the test on channel ``channel`` (from 0)."""
        return self.db.samples(self.outcomes[channel].test_id)


RunOnSim = Callable[..., SimRun]
RunRequests = Callable[..., tuple[list[TestOutcome], SampleBatch]]


def _run_requests(db: Database, clock: VirtualClock, requests: list[TestRequest], *,
                  sample_period_s: float, hooks: Any = None) -> tuple[list[TestOutcome],
                                                                       SampleBatch]:
    """Open every driver and chamber the requests name, run them to their ends, and return the
    outcomes with what the first driver measured one sample period later; closes all."""
    drivers = list({id(r.channel.driver): r.channel.driver for r in requests}.values())
    chambers = list({id(r.chamber): r.chamber for r in requests
                     if r.chamber is not None}.values())
    writer = SampleWriter(db)
    runner = Runner(db, writer, clock, sample_period_s=sample_period_s, hooks=hooks)

    async def main() -> tuple[list[TestOutcome], SampleBatch]:
        for device in [*drivers, *chambers]:
            await device.open(clock)
        try:
            outcomes = await runner.run(requests)
            await clock.sleep_until(clock.now() + sample_period_s)
            return outcomes, await drivers[0].measure()
        finally:
            for device in [*drivers, *chambers]:
                await device.close()

    try:
        return asyncio.run(main())
    finally:
        writer.close()


@pytest.fixture
def run_requests() -> RunRequests:
    """``run_requests(db, clock, requests, *, sample_period_s, hooks=None)``: open every driver
    and chamber of ``requests``, run them on ``clock`` into ``db``, close them; returns the
    outcomes and what the first driver measured one sample period after the end."""
    return _run_requests


@pytest.fixture
def run_on_sim(tmp_path: Path, tables: TableLoader) -> RunOnSim:
    """``run_on_sim(plan, *, channels=1, sample_period_s=5.0, battery=None, driver=None,
    chamber=None, hooks=None, **cell_settings)``: run ``plan`` (its text, read as
    ``plan.yaml``, or a plan file) on each channel of ``driver``, by default ``channels``
    simulated exact cells (no spread of capacity or resistance, no ageing: the nominal
    parameters hold for the whole test; ``cell_settings`` change them), for ``battery``
    (registered first) if given, with ``chamber`` attached; each call in a database of its
    own (the first: ``tmp_path / "results.db"``). Profile tables are read by the installed
    lookup plugin, as a station reads them."""
    runs = 0

    def run(plan: str | Path, *, channels: int = 1, sample_period_s: float = 5.0,
            battery: dict[str, Any] | None = None, driver: SimChannels | None = None,
            chamber: SimChamber | None = None, hooks: Any = None, **settings: Any) -> SimRun:
        nonlocal runs
        runs += 1
        name = "results.db" if runs == 1 else f"results-{runs}.db"
        db = open_database(f"sqlite:///{tmp_path / name}")
        record = None
        if battery is not None:
            db.add_battery(**battery)
            record = db.battery(battery["name"])
        driver = driver or SimChannels(SimChannelSettings(
            count=channels, **{"capacity_spread": 0.0, "resistance_spread": 0.0,
                               "ageing": "none", **settings}))
        parsed = (load_plan(plan, tables=tables) if isinstance(plan, Path)
                  else parse_plan(plan, "plan.yaml", tables=tables))
        requests = [TestRequest(ChannelRef(n + 1, driver, "sim", n), parsed, record,
                                chamber=chamber) for n in range(channels)]
        outcomes, after = _run_requests(db, VirtualClock(), requests,
                                        sample_period_s=sample_period_s, hooks=hooks)
        return SimRun(db, outcomes, after)

    return run

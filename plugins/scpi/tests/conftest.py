"""Emulated instruments on loopback, the drivers that reach them, and a plan run on them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.plan import load_plan, parse_plan
from cellbench_core.runner import ChannelRef, Runner, TestOutcome, TestRequest
from cellbench_core.storage import Database, SampleRows, SampleWriter, open_database
from cellbench_scpi.driver import ScpiChannel, bidirectional_channel, pair_channel, smu_channel
from cellbench_scpi.emulator import Emulator
from cellbench_scpi.settings import (
    BidirectionalSettings,
    InstrumentSettings,
    PairSettings,
    SmuSettings,
)
from cellbench_sdk import ChannelDriver, Clock

#: The drivers, by the emulator model that stands in for their instruments.
MODELS = ("smu", "bidirectional", "pair")


def driver_for(emulator: Emulator, model: str, **settings: Any) -> ScpiChannel:
    """The driver of ``model`` reaching ``emulator``'s instruments."""
    if model == "smu":
        return smu_channel(SmuSettings(resource=emulator.resource(), **settings))
    if model == "bidirectional":
        return bidirectional_channel(BidirectionalSettings(resource=emulator.resource(),
                                                           **settings))
    return pair_channel(PairSettings(supply=InstrumentSettings(resource=emulator.resource(0)),
                                     load=InstrumentSettings(resource=emulator.resource(1)),
                                     **settings))


@dataclass
class PlanRun:
    """A finished plan: its database and outcome."""

    db: Database
    outcome: TestOutcome

    def samples(self) -> dict[str, np.ndarray]:
        """The test's samples."""
        return self.db.samples(self.outcome.test_id)


RunPlan = Callable[..., Awaitable[PlanRun]]


@pytest.fixture
def run_plan(tmp_path: Path) -> RunPlan:
    """``await run_plan(plan, driver, clock, *, sample_period_s, battery=None,
    name="scpi", stop_at_step=None)``: run ``plan`` (YAML text or a plan file) on channel 0 of
    the open ``driver`` into a database of its own, until it ends or reaches the step of index
    ``stop_at_step``; the caller opens and closes the driver."""
    runs = 0

    async def run(plan: str | Path, driver: ChannelDriver, clock: Clock, *,
                  sample_period_s: float, battery: dict[str, Any] | None = None,
                  name: str = "scpi", stop_at_step: int | None = None) -> PlanRun:
        nonlocal runs
        runs += 1
        db = open_database(f"sqlite:///{tmp_path / f'run-{runs}.db'}")
        record = None
        if battery is not None:
            db.add_battery(**battery)
            record = db.battery(battery["name"])
        parsed = load_plan(plan) if isinstance(plan, Path) else parse_plan(plan, "plan.yaml")
        writer = SampleWriter(db)
        try:
            runner = Runner(db, writer, clock, sample_period_s=sample_period_s)
            if stop_at_step is not None:
                def stop_there(channels: object, rows: SampleRows) -> None:
                    if (rows.step_index >= stop_at_step).any():
                        runner.stop(reason=f"reached step {stop_at_step}")

                runner.observer = stop_there
            outcomes = await runner.run([TestRequest(ChannelRef(1, driver, name, 0), parsed,
                                                     record)])
        finally:
            await asyncio.to_thread(writer.close)
        return PlanRun(db, outcomes[0])

    return run

"""Test data for the export plugin: a test run by the runner on simulated cells, and tests
written sample batch by sample batch with the storage writer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from cellbench_core.plan import parse_plan
from cellbench_core.runner import ChannelRef, Runner, TestRequest
from cellbench_core.storage import Database, SampleRows, SampleWriter, TestStart, open_database
from cellbench_hal import VirtualClock
from cellbench_sim.channel import SimChannels, SimChannelSettings

PLAN = """
name: export cycles
capacity: 2.5 Ah
steps:
  - Rest for 2 minutes
  - repeat: 2
    steps:
      - Charge at 1C to 4.2 V until C/5
      - Rest for 1 minute
      - Discharge at 2C until 3.2 V
"""


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, int]]:
    """A finished test of a simulated cell (charge, rest, discharge, twice) and its database."""
    db = open_database(f"sqlite:///{tmp_path_factory.mktemp('sim') / 'results.db'}")
    driver = SimChannels(SimChannelSettings(count=1, capacity_ah=2.5, initial_soc=0.4))
    clock = VirtualClock()
    writer = SampleWriter(db)
    runner = Runner(db, writer, clock, sample_period_s=5.0)

    async def main() -> int:
        await driver.open(clock)
        try:
            [outcome] = await runner.run([TestRequest(ChannelRef(1, driver, "sim", 0),
                                                      parse_plan(PLAN, source="cycles.yaml"))])
            return outcome.test_id
        finally:
            await driver.close()

    try:
        test_id = asyncio.run(main())
    finally:
        writer.close()
    yield db, test_id
    db.close()


def _start_test(db: Database, name: str = "staged Ölbad 25 °C") -> int:
    """A running test on channel ``bench/1`` for battery ``cell-A`` (created if missing)."""
    if db.battery("cell-A") is None:
        db.add_battery("cell-A", "NMC", 2.5)
    [test_id] = db.start_tests([TestStart(
        name=name, channel="bench/1", driver="sim", battery="cell-A", plan_name="staged",
        plan_source="staged.yaml", plan_text="", sample_period_s=1.0, station="lab-7",
        start_unix_s=1_700_000_000.25)])
    return test_id


def _batch(test_id: int, first_seq: int, rows: int, step_index: int, *,
          aux: dict[str, float] | None = None, step_start_time_s: float | None = None
          ) -> SampleRows:
    """``rows`` samples of one step with awkward values: long fractions, NULL voltages, tiny
    currents; ``aux`` signals get per-sample values (NaN every third sample)."""
    seq = np.arange(first_seq, first_seq + rows, dtype=np.int64)
    t = ((seq - 1) * 1.0 + 0.1234567890123).astype(np.float64)
    step_t = t - (t[0] if step_start_time_s is None else step_start_time_s)
    sign = (-1.0) ** step_index
    current = (sign * (1.25 + seq * 1e-9)).astype(np.float64)
    current[::4] = sign * 3.3e-17
    voltage = 3.6 + seq / 7.0
    voltage[1::5] = np.nan
    extra = {}
    for k, name in enumerate(aux or {}):
        values = (aux or {})[name] + seq / 11.0 + k
        values[::3] = np.nan
        extra[name] = values
    return SampleRows(
        test_id=np.full(rows, test_id, dtype=np.int64), seq=seq, test_time_s=t,
        unix_time_s=(1_700_000_000.25 + t + 0.000_000_3).astype(np.float64),
        step_time_s=step_t,
        voltage_v=voltage, current_a=current, step_index=np.full(rows, step_index),
        plan_line=np.full(rows, 10 + step_index), cycle=np.full(rows, step_index // 2),
        power_w=voltage * current, temperature_c=25.0 + seq / 3.0,
        ah=(current * step_t / 3600.0).astype(np.float64),
        wh=current * voltage * step_t / 3600.0, aux=extra)



StartTest = Callable[..., int]
Batch = Callable[..., SampleRows]


@pytest.fixture
def start_test() -> StartTest:
    """Start a staged test: ``start_test(db, name=...)`` returns its id."""
    return _start_test


@pytest.fixture
def batch() -> Batch:
    """Samples of a staged test: ``batch(test_id, first_seq, rows, step_index, aux=...)``."""
    return _batch

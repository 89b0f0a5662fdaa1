"""A smart battery and a data logger in a station file: ``cellbench run --station`` opens them,
records their signals as aux columns of the test, ends a step on a logger signal and records
what each device says about itself with the test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.storage import open_database
from cellbench_scpi_logger.emulator import LoggerEmulator

PLAN = """\
name: watch the pack
steps:
  - mode: rest
    until: daq.v_cell >= 3 V or step_time >= 30 s
  - Rest for 1 second
"""

STATION = """\
[station]
name = "lab"
database = "sqlite:///{db}"
sample_period = "0.25 s"

[[channels]]
driver = "sim"
[channels.settings]
count = 1

[[devices]]
kind = "smartbattery"
name = "pack"
[devices.settings]
bus = "emulated"

[[devices]]
kind = "scpi-logger"
name = "daq"
[devices.settings]
address = "127.0.0.1:{port}"
[devices.settings.channels]
t_cell = {{ch = 101, kind = "tc-k"}}
v_cell = {{ch = 201, kind = "dcv"}}
"""


@pytest.fixture
def logger_port() -> Iterator[int]:
    """An emulated logger on loopback, served by an event loop of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    emulator = LoggerEmulator()
    try:
        yield asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_station_records_a_smart_battery_and_a_logger(tmp_path: Path,
                                                         logger_port: int) -> None:
    db_path = tmp_path / "station.db"
    station = tmp_path / "station.toml"
    station.write_text(STATION.format(db=db_path, port=logger_port), encoding="utf-8")
    plan = tmp_path / "watch.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(plan), "--station", str(station),
                                      "--speed", "real"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    database = open_database(f"sqlite:///{db_path}")
    try:
        test = database.test(1)
        assert test is not None and test.end_reason == "plan complete"
        samples = database.samples(1)
        assert 3.5 < samples["daq.v_cell"][0] < 3.9  # the emulator's cell
        assert 20 < samples["daq.t_cell"][0] < 30
        assert 12 < samples["pack.voltage"][0] < 18  # four cells of the register model
        assert samples["pack.status_initialized"][0] == 1.0
        first = database.steps(1)[0]
        assert first.end_reason == "daq.v_cell >= 3 V"  # the logger ended the step
        info = {e.data["device"]: e.data["info"] for e in database.events(1)
                if e.kind == "device_info"}
    finally:
        database.close()
    assert info["pack"]["chemistry"] == "LION"
    assert info["daq"]["model"] == "DAQ970A"

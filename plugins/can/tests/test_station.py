"""The CAN device in a station file: `cellbench run` records its signals as aux columns, ends
a step on one and records the device's info, with a BMS node on a python-can virtual bus of the
same process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cellbench_can.emulator import BMS_DBC, BmsNode
from cellbench_core.cli import app
from cellbench_core.storage import open_database

PLAN = """\
name: bms watch
steps:
  - mode: rest
    until: bms.Cell1_V >= 3 V or step_time >= 60 s
  - Rest for 1 second
"""


def test_a_run_records_the_bms_and_ends_a_step_on_its_signal(
        tmp_path: Path, channel: str, node: BmsNode) -> None:
    plan = tmp_path / "watch.yaml"
    plan.write_text(PLAN)
    station = tmp_path / "station.toml"
    station.write_text(f"""
[station]
name = "can-bench"
database = "sqlite:///{tmp_path / 'run.db'}"
sample_period = "100 ms"
[[channels]]
driver = "sim"
settings = {{count = 2}}
[[devices]]
kind = "can"
name = "bms"
channels = "1-2"
settings = {{bus = {{interface = "virtual", channel = "{channel}"}}, database = "{BMS_DBC}", \
node = "STATION", transmit = {{STATION_Heartbeat = {{counter = "AliveCounter"}}}}}}
""")
    result = CliRunner().invoke(app, ["run", str(plan), "--station", str(station)])
    assert result.exit_code == 0, result.output
    assert node.received["STATION_Heartbeat"]["AliveCounter"] >= 0  # the station spoke
    db = open_database(f"sqlite:///{tmp_path / 'run.db'}")
    try:
        tests = db.tests()
        assert len(tests) == 2  # one per channel, both seeing the one BMS
        for test in tests:
            on_bms = db.samples(test.id)
            assert {"bms.Cell1_V", "bms.PackVoltage", "bms.CellTempMax", "bms.alarm",
                    "bms.StationState"} <= set(on_bms)
            ending = db.steps(test.id)[0]
            assert ending.end_reason == "bms.Cell1_V >= 3 V"  # the BMS ended the step
            cell = on_bms["bms.Cell1_V"][on_bms["seq"] >= ending.end_seq]
            assert np.all(cell > 3.0) and np.all(cell < 4.2)
            assert np.all(on_bms["bms.alarm"][on_bms["seq"] >= ending.end_seq] == 0)
            info = {e.data["device"]: e.data["info"] for e in db.events(test.id)
                    if e.kind == "device_info"}
            assert info["bms"]["database"] == "bms.dbc"  # which frames meant what
    finally:
        db.close()


def test_one_bus_serves_a_device_section_per_channel(tmp_path: Path, channel: str,
                                                     node: BmsNode) -> None:
    """Two sections on one bus, each mapping its channel's cell to the same name."""
    plan = tmp_path / "rest.yaml"
    plan.write_text("name: rest\nsteps:\n  - Rest for 1 second\n")
    station = tmp_path / "station.toml"
    sections = "".join(f"""
[[devices]]
kind = "can"
name = "cell{n}"
channels = "{n}"
settings = {{bus = {{interface = "virtual", channel = "{channel}"}}, database = "{BMS_DBC}", \
node = "STATION", signals = {{v = "Cell{n}_V", t_max = "CellTempMax"}}}}
""" for n in (1, 2))
    station.write_text(f"""
[station]
database = "sqlite:///{tmp_path / 'run.db'}"
sample_period = "100 ms"
[[channels]]
driver = "sim"
settings = {{count = 2}}
{sections}""")
    result = CliRunner().invoke(app, ["run", str(plan), "--station", str(station)])
    assert result.exit_code == 0, result.output
    db = open_database(f"sqlite:///{tmp_path / 'run.db'}")
    try:
        first, second = (db.samples(test.id) for test in db.tests())
    finally:
        db.close()
    assert {name for name in first if "." in name} == {"cell1.v", "cell1.t_max", "cell1.alarm",
                                                      "cell1.bad_frames"}
    assert {name for name in second if "." in name} == {"cell2.v", "cell2.t_max",
                                                       "cell2.alarm", "cell2.bad_frames"}
    one, two = first["cell1.v"][-1], second["cell2.v"][-1]
    assert 3.0 < one < two < 4.2  # each its own cell: the pack's spread


LIMITED = """\
name: charge under the BMS
limits:
  bms.CellVoltageMax: {{max: {cell_max}, for: 300 ms}}
  bms.CellTempMax: {{max: 60 °C, for: 1 s}}  # its message comes every 200 ms
steps:
  - set: {{bms.ChargeCurrentLimit: {current}}}
  - Rest for 2 seconds
  - Rest for 1 second
"""


def station_with_bms(tmp_path: Path, channel: str) -> Path:
    """A station whose BMS closes its contactor for each test and opens it at every stop."""
    station = tmp_path / "station.toml"
    station.write_text(f"""
[station]
database = "sqlite:///{tmp_path / 'run.db'}"
sample_period = "100 ms"
[[channels]]
driver = "sim"
settings = {{count = 1}}
[[devices]]
kind = "can"
name = "bms"
on_start = {{ChargeEnable = 1, ContactorRequest = 1}}
on_stop = {{ChargeEnable = 0, ContactorRequest = 0}}
settings = {{bus = {{interface = "virtual", channel = "{channel}"}}, database = "{BMS_DBC}", \
node = "STATION", transmit = {{STATION_Heartbeat = {{counter = "AliveCounter"}}, \
STATION_ChargeControl = {{period_s = 0.1}}}}}}
""")
    return station


def test_bms_signals_limit_a_test_and_the_station_opens_its_contactor(
        tmp_path: Path, channel: str, node: BmsNode) -> None:
    plan = tmp_path / "charge.yaml"
    plan.write_text(LIMITED.format(cell_max="4.5 V", current="25 A"))
    station = station_with_bms(tmp_path, channel)
    result = CliRunner().invoke(app, ["run", str(plan), "--station", str(station)])
    assert result.exit_code == 0, result.output
    sent = node.received["STATION_ChargeControl"]
    assert (sent["ChargeEnable"], sent["ContactorRequest"]) == (0, 0)  # on_stop, last
    tripped = tmp_path / "tripped.yaml"
    tripped.write_text(LIMITED.format(cell_max="4000 mV", current="25 A"))
    result = CliRunner().invoke(app, ["run", str(tripped), "--station", str(station)])
    assert result.exit_code == 3, result.output  # a test ended on a safety limit
    db = open_database(f"sqlite:///{tmp_path / 'run.db'}")
    try:
        calm, limited = sorted(db.tests(), key=lambda test: test.id)
        events = {test.id: [(e.kind, e.message) for e in db.events(test.id)
                            if e.kind in ("device_write", "alarm")] for test in (calm, limited)}
        closed = db.samples(calm.id, ["bms.ContactorClosed", "bms.ChargeAllowed"])
    finally:
        db.close()
    assert calm.status.value == "finished"
    assert events[calm.id] == [
        ("device_write", "bms.ChargeEnable = 1 (on_start)"),
        ("device_write", "bms.ContactorRequest = 1 (on_start)"),
        ("device_write", "bms.ChargeCurrentLimit = 25 A (plan line 6)"),
        ("device_write", "bms.ChargeEnable = 0 (on_stop)"),
        ("device_write", "bms.ContactorRequest = 0 (on_stop)")]
    assert np.nanmax(closed["bms.ContactorClosed"]) == 1  # the BMS did as the station asked
    assert limited.status.value == "stopped"
    alarm = [message for kind, message in events[limited.id] if kind == "alarm"]
    assert len(alarm) == 1 and alarm[0].startswith(
        "channel 1: safety limit bms.CellVoltageMax max 4 V (device 'bms'): measured 4.")
    assert alarm[0].endswith(" V for 0.3 s")
    assert events[limited.id][-2:] == [("device_write", "bms.ChargeEnable = 0 (on_stop)"),
                                       ("device_write", "bms.ContactorRequest = 0 (on_stop)")]


def test_plan_check_knows_the_dbc_ranges(tmp_path: Path, channel: str) -> None:
    plan = tmp_path / "charge.yaml"
    plan.write_text(LIMITED.format(cell_max="4.5 V", current="600 A"))
    result = CliRunner().invoke(app, ["plan", "check", str(plan), "--station",
                                      str(station_with_bms(tmp_path, channel))])
    assert result.exit_code == 2
    assert ("charge.yaml:6: set bms.ChargeCurrentLimit: 600 A is beyond the range of signal "
            "'bms.ChargeCurrentLimit' (0..500 A)") in " ".join(result.output.split())

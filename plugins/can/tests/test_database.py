"""Bad databases and settings that name what a database lacks: each refused when the station
file is read, naming the file and the message or signal, with the closest names it has."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import cellbench_can.plugin
from cellbench_can.database import CanConfigError
from cellbench_can.device import CanDevice
from cellbench_can.emulator import BMS_DBC
from cellbench_can.settings import CanSettings
from cellbench_sdk import Kind
from cellbench_sdk.testing import check_plugin

BUS = {"interface": "virtual", "channel": "never-opened"}


def build(**settings: Any) -> CanDevice:
    return CanDevice(CanSettings.model_validate({"bus": BUS, "database": str(BMS_DBC),
                                                 **settings}))


def test_a_database_that_does_not_parse_names_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dbc"
    broken.write_text(BMS_DBC.read_text().replace(" SG_ PackCurrent : 16|16",
                                                  " SG_ PackCurrent 16|16"))
    with pytest.raises(CanConfigError, match=r"broken\.dbc: not a valid CAN database: .*line 11"):
        build(database=str(broken))


@pytest.mark.parametrize(("name", "text", "why"), [
    ("missing.dbc", None, "cannot read the CAN database"),
    ("notes.txt", "hello", "not a valid CAN database: .*'txt'"),
    ("empty.dbc", 'VERSION ""\n', "the CAN database has no messages"),
])
def test_unreadable_databases_are_refused(tmp_path: Path, name: str, text: str | None,
                                          why: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(CanConfigError, match=f"{name}: {why}"):
        build(database=str(path))


def test_overlapping_signals_are_refused_unless_strict_is_off(tmp_path: Path) -> None:
    overlapping = tmp_path / "overlap.dbc"
    overlapping.write_text(BMS_DBC.read_text().replace(
        " SG_ PackCounter : 56|4", " SG_ PackCounter : 36|4"))
    with pytest.raises(CanConfigError, match="overlapping"):
        build(database=str(overlapping))
    assert build(database=str(overlapping), strict=False).layout.readable


@pytest.mark.parametrize(("settings", "error"), [
    ({"signals": {"cell_v": "Cell7_V"}},
     r"bms\.dbc: signals: no signal 'Cell7_V' \(did you mean 'Cell6_V', "),
    ({"signals": {"v": "BMS_Pak.PackVoltage"}},
     r"no signal 'BMS_Pak\.PackVoltage' \(did you mean 'BMS_Pack\.PackVoltage'"),
    ({"signals": {"alarm": "PackVoltage"}}, "'alarm' is the device's own signal"),
    ({"transmit": {"STATION_Heartbeat": {"counter": "AliveCounter"}},
      "signals": {"n": "AliveCounter"}}, "is the counter of STATION_Heartbeat"),
    ({"transmit": {"STATION_Heartbat": {}}},
     r"transmit: no message 'STATION_Heartbat' \(did you mean 'STATION_Heartbeat'\?\)"),
    ({"transmit": {"STATION_Heartbeat": {"values": {"StationStat": 1}}}},
     r"message STATION_Heartbeat has no signal 'StationStat' \(did you mean 'StationState'"),
    ({"transmit": {"STATION_Heartbeat": {"values": {"StationState": 9}}}},
     "transmit.STATION_Heartbeat: cannot encode STATION_Heartbeat: .*smaller than or equal"),
    ({"timeouts": {"BMS_Pac": 1.0}}, r"timeouts: no message 'BMS_Pac' \(did you mean"),
    ({"timeouts": {"STATION_Heartbeat": 1.0}, "transmit": {"STATION_Heartbeat": {}}},
     "timeouts names 'STATION_Heartbeat', which the station sends"),
    ({"on_close": {"ChargeEnable": 0}}, "on_close names 'ChargeEnable', which is not a "
                                        "writable signal"),
    ({"transmit": {"STATION_ChargeControl": {}}, "on_close": {"ChargeEnabled": 0}},
     r"did you mean 'ChargeEnable'"),
    ({"transmit": {"STATION_ChargeControl": {}}, "on_close": {"ChargeEnable": 3}},
     "on_close: cannot encode STATION_ChargeControl"),
    ({"node": "STATIN"}, "node: no node 'STATIN' .*BMS, STATION"),
    ({"bus": {"interface": "socketcna", "channel": "can0"}},
     r"bus.interface: python-can has no interface 'socketcna' \(did you mean 'socketcan'"),
    ({"node": "STATION", "signals": {"enable": "ChargeEnable"}},
     "which node STATION .*sends: list STATION_ChargeControl in transmit"),
])
def test_settings_naming_what_the_database_lacks_are_refused(settings: dict[str, Any],
                                                             error: str) -> None:
    with pytest.raises(CanConfigError, match=error):
        build(**settings)


def test_timeouts_come_from_the_cycle_times_unless_given(tmp_path: Path) -> None:
    received = build(timeout_cycles=2.5, timeouts={"BMS_Pack": 0.05}).layout.received
    assert received[(0x100, False)].timeout_s == 0.05
    assert received[(0x101, False)].timeout_s == pytest.approx(0.25)  # 2.5 x 100 ms
    assert received[(0x18FF50E5, True)].timeout_s == pytest.approx(0.5)  # extended, 200 ms
    no_cycle_times = tmp_path / "plain.dbc"
    no_cycle_times.write_text(BMS_DBC.read_text().replace('BA_ "GenMsgCycleTime" BO_ 256 100;',
                                                          ""))
    received = build(database=str(no_cycle_times), timeout_s=2.0).layout.received
    assert received[(0x100, False)].timeout_s == 2.0


def test_periods_come_from_the_cycle_times_unless_given() -> None:
    sent = build(transmit={"STATION_Heartbeat": {},
                           "STATION_ChargeControl": {"period_s": 0}}).layout.sent
    assert sent["STATION_Heartbeat"].period_s == pytest.approx(0.1)  # GenMsgCycleTime 100
    assert sent["STATION_ChargeControl"].period_s == 0  # on demand only


def test_a_signal_in_two_messages_must_be_named_with_its_message(tmp_path: Path) -> None:
    twice = tmp_path / "twice.dbc"
    twice.write_text(BMS_DBC.read_text().replace("SG_ CellVoltageMin ", "SG_ PackVoltage "))
    with pytest.raises(CanConfigError, match="'PackVoltage' is in several messages "
                                             r"\(BMS_Pack\.PackVoltage, BMS_CellSummary"):
        build(database=str(twice), signals={"v": "PackVoltage"})
    # Without a choice, both are offered under their messages' names.
    names = {info.name for info in build(database=str(twice)).signals}
    assert {"BMS_Pack_PackVoltage", "BMS_CellSummary_PackVoltage"} <= names


@pytest.mark.parametrize(("settings", "where"), [
    ({"bus": {"interface": "virtual"}}, "channel"),
    ({"bus": {**BUS, "bitrate": 0}}, "bitrate"),
    ({"bus": {**BUS, "bitrat": 500000}}, "bitrat"),
    ({"signals": {"cell v": "Cell1_V"}}, "signals.cell v"),
    ({"timeouts": {"BMS_Pack": 0}}, "timeouts.BMS_Pack"),
    ({"transmit": {"STATION_Heartbeat": {"period_s": -1}}}, "period_s"),
])
def test_the_settings_model_names_the_bad_field(settings: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError, match=where.replace(".", r"\.")):
        CanSettings.model_validate({"bus": BUS, "database": str(BMS_DBC), **settings})


def test_a_station_file_error_names_the_section_and_the_file(tmp_path: Path) -> None:
    """Through the plugin as a station builds it: the factory's error is a ValueError the
    station reports under the section's settings."""
    descriptors = check_plugin(cellbench_can.plugin, {
        (Kind.OSI_DEVICE, "can"): {"bus": BUS, "database": str(BMS_DBC)}},
        only=(Kind.OSI_DEVICE, "can"))
    with pytest.raises(ValueError, match=r"bms\.dbc: signals: no signal 'cell1'"):
        descriptors[0].create({"bus": BUS, "database": str(BMS_DBC),
                               "signals": {"v": "cell1"}})


def test_the_example_in_the_docs_builds_against_the_bundled_database() -> None:
    """docs/can.md's station file example names what bms.dbc has."""
    docs = (Path(__file__).parents[3] / "docs" / "can.md").read_text(encoding="utf-8")
    example = tomllib.loads(docs.split("```toml\n", 1)[1].split("```", 1)[0])
    settings = example["devices"][0]["settings"]
    assert settings["database"] == "bms.dbc"
    bms = build(**{**settings, "database": str(BMS_DBC)})
    assert {"ChargeEnable", "ChargeCurrentLimit", "StationState"} <= set(bms.layout.writable)

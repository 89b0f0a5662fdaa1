"""OSI devices and climate chambers in the station file: checked keys, attached to their
channels, read once per sample period, recorded with the samples of the tests that see them, and
a chamber's temperature reaching the simulated cells inside it."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from cellbench_core.descriptors import Descriptor, Kind
from cellbench_core.events import TestStatus
from cellbench_core.hookspecs import hookimpl
from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.station import Station, StationError, station_from_dict
from cellbench_core.storage import Database, open_database
from cellbench_core.storage.queue import QueueStatus, TestQueue
from cellbench_hal import (
    Clock,
    DeviceConnectionError,
    OsiDevice,
    Reading,
    SignalInfo,
    VirtualClock,
)

COOL_DOWN = """\
name: cool down
capacity: 2.5 Ah
steps:
  - {chamber: 0 °C, within: 1 K, stable: 30 min, timeout: 4 h}
  - Discharge at C/5 for 30 minutes
"""
REST = """\
name: rest
steps:
  - Rest for 3 hours
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'devices.db'}")
    yield database
    database.close()


def config(db: Database, **sections: Any) -> dict[str, Any]:
    return {"station": {"name": "lab", "database": db.url, "sample_period": "30 s",
                        "queue_poll_interval": "0.02 s"},
            "channels": [{"driver": "sim", "settings": {"count": 4, "seed": 1}}], **sections}


def build(data: dict[str, Any]) -> Station:
    manager = PluginManager()
    manager.load()
    return Station(station_from_dict(data), manager)


@pytest.mark.parametrize(("sections", "message"), [
    ({"devices": [{"kind": "sim", "name": "Rig"}]}, r"devices\[0\]\.name: String should match"),
    ({"devices": [{"kind": "sim", "name": "a"}], "chambers": [{"kind": "sim", "name": "a"}]},
     r"chambers\[0\]\.name: 'a' is also devices\[0\]\.name"),
    ({"devices": [{"kind": "nope", "name": "a"}]},
     r"devices\[0\]\.kind: no OSI device called 'nope'"),
    ({"chambers": [{"kind": "sim", "name": "c", "settings": {"colour": 1}}]},
     r"chambers\[0\]\.settings\.colour: unknown key \(expected one of: "),
])
def test_bad_sections_name_the_key(db: Database, sections: dict[str, Any], message: str
                                   ) -> None:
    with pytest.raises(StationError, match=message):
        build(config(db, **sections))


@pytest.mark.parametrize(("sections", "message"), [
    ({"devices": [{"kind": "sim", "name": "a", "channels": "2-9"}]},
     r"devices\[0\]\.channels: channel 5 does not exist \(this station has channels 1-4\)"),
    ({"chambers": [{"kind": "sim", "name": "c1", "channels": "1-2"},
                   {"kind": "sim", "name": "c2", "channels": "2-4"}]},
     r"chambers\[1\]\.channels: channel 2 is already in chamber 'c1'"),
])
def test_channels_of_sections_are_checked_when_the_station_opens(
        db: Database, sections: dict[str, Any], message: str) -> None:
    station = build(config(db, **sections))
    with pytest.raises(StationError, match=message):
        asyncio.run(station.open(VirtualClock()))
    assert station.channels == []  # everything opened was closed again


class Flaky(OsiDevice):
    """An OSI device whose reads fail."""

    virtual_time_ok = True
    name = "flaky"

    async def open(self, clock: Clock) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def signals(self) -> Sequence[SignalInfo]:
        return (SignalInfo("level", "V"),)

    async def read(self) -> Mapping[str, Reading]:
        raise DeviceConnectionError(self.name, "no answer")

    async def write(self, signal: str, value: float) -> None:
        raise DeviceConnectionError(self.name, "no answer")


def test_chambers_and_devices_reach_the_tests_of_their_channels(
        db: Database, caplog: pytest.LogCaptureFixture, serve_until: Callable[..., None]
) -> None:
    data = config(db, chambers=[{"kind": "sim", "name": "climate", "channels": "1-2",
                                 "settings": {"max_ramp_k_per_min": 5.0}}],
                  devices=[{"kind": "sim", "name": "rig", "channels": "2-3"},
                           {"kind": "sim", "name": "broken", "channels": "3"}])
    station = build(data)
    station.devices[1] = (station.devices[1][0], Flaky())
    queue = TestQueue(db)
    for channel, plan in ((1, COOL_DOWN), (2, COOL_DOWN), (3, REST), (4, REST)):
        queue.add(channel, plan)
    service = StationService(station, db, VirtualClock(), PluginManager().hook)
    with caplog.at_level(logging.WARNING):
        serve_until(service)
    tests = {e.channel: e.test_id for e in queue.entries()}
    assert all(e.status is QueueStatus.FINISHED for e in queue.entries()), queue.entries()
    assert all(db.test(t).status is TestStatus.FINISHED for t in tests.values())
    one = db.samples(tests[1])
    assert "climate.temperature" in one and "rig.temperature_c" not in one
    two = db.samples(tests[2])
    assert {"climate.temperature", "rig.temperature_c", "rig.pressure_kpa"} <= set(two)
    three = db.samples(tests[3])
    assert "rig.pressure_kpa" in three and "climate.temperature" not in three
    assert not any(name.startswith("broken.") for name in three)  # missing: nothing stored
    assert not any("." in name for name in db.samples(tests[4]))  # no device, no chamber
    # The chamber cooled to 0 °C and the cells in it followed, the others stayed at 25 °C.
    chamber = one["climate.temperature"]
    assert chamber[0] > 20 and abs(chamber[-1]) < 1.0
    assert one["temperature_c"][0] > 20 and one["temperature_c"][-1] < 3.0
    assert np.nanmin(db.samples(tests[4])["temperature_c"]) > 20
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("broken: " in w and "no answer" in w for w in warnings) == 1  # logged once


class Identified(Flaky):
    """An OSI device that says who it is and reads a steady level."""

    name = "identified"

    @property
    def info(self) -> Mapping[str, str]:
        return {"manufacturer": "ACME", "serial_number": "42"}

    async def read(self) -> Mapping[str, Reading]:
        return {"level": Reading(1.5, 0.0)}


def test_what_devices_say_about_themselves_is_recorded_with_each_test(
        db: Database, serve_until: Callable[..., None]) -> None:
    data = config(db, devices=[{"kind": "sim", "name": "pack", "channels": "1"},
                               {"kind": "sim", "name": "rig", "channels": "1-2"}])
    station = build(data)
    station.devices[0] = (station.devices[0][0], Identified())
    queue = TestQueue(db)
    first, second = queue.add(1, REST), queue.add(2, REST)
    serve_until(StationService(station, db, VirtualClock(), PluginManager().hook))
    tests = []
    for number in (first, second):
        entry = queue.entry(number)
        assert entry is not None and entry.status is QueueStatus.FINISHED, entry
        tests.append(entry.test_id)
    one = [e for e in db.events(tests[0]) if e.kind == "device_info"]
    assert [(e.message, e.data, e.channel) for e in one] == [
        ("pack: manufacturer ACME, serial_number 42",
         {"device": "pack", "info": {"manufacturer": "ACME", "serial_number": "42"}}, "1")]
    # The sim rig says nothing about itself, and channel 2 has no pack.
    assert not [e for e in db.events(tests[1]) if e.kind == "device_info"]


SIGNAL_END = """\
name: warm-up watch
steps:
  - mode: rest
    until: rig.temperature_c >= 26.5 °C or step_time >= 10 h
  - Rest for 5 minutes
"""


def test_a_step_ends_on_a_device_signal(db: Database, serve_until: Callable[..., None]) -> None:
    station = build(config(db, devices=[{"kind": "sim", "name": "rig", "channels": "1-2"}]))
    queue = TestQueue(db)
    good = queue.add(1, SIGNAL_END, plan_source="watch.yaml")
    unknown = queue.add(3, SIGNAL_END, plan_source="watch.yaml")  # channel 3 has no rig
    wrong_unit = queue.add(2, SIGNAL_END.replace("rig.temperature_c >= 26.5 °C",
                                                 "rig.pressure_kpa >= 100 V"),
                           plan_source="units.yaml")
    service = StationService(station, db, VirtualClock(), PluginManager().hook)
    serve_until(service)
    entry = queue.entry(good)
    assert entry is not None and entry.status is QueueStatus.FINISHED, entry
    first = db.steps(entry.test_id)[0]
    assert first.end_reason == "rig.temperature_c >= 26.5 °C"
    assert first.end_test_time_s < 3600  # the sine of the sensor got there in its first quarter
    samples = db.samples(entry.test_id, ["seq", "rig.temperature_c"])
    at_end = samples["rig.temperature_c"][samples["seq"] == first.end_seq]
    assert at_end[0] >= 26.5
    before = samples["rig.temperature_c"][samples["seq"] < first.end_seq]
    assert (before < 26.5).all()  # it did not end early
    refused = queue.entry(unknown)
    assert refused is not None and refused.status is QueueStatus.FAILED
    assert "watch.yaml:3: signal 'rig.temperature_c' is not recorded on channel 3 (its " \
           "signals: none" in (refused.error or "")
    mismatch = queue.entry(wrong_unit)
    assert mismatch is not None and mismatch.status is QueueStatus.FAILED
    assert "signal 'rig.pressure_kpa' is in 'kPa'" in (mismatch.error or "")


@pytest.mark.parametrize(("until", "message"), [
    ("Rig.x >= 1", "'Rig.x' is not a signal name like 'bms.cell_max_v'"),
    ("rig.temperature_c >= 2C", "a C-rate needs a battery"),
    ("rig.level >= lots", "rig.level: "),
])
def test_signal_conditions_are_checked_when_parsed(until: str, message: str) -> None:
    from cellbench_core.plan import PlanError, parse_plan

    with pytest.raises(PlanError, match=message):
        parse_plan(f"name: x\nsteps:\n  - mode: rest\n    until: {until}\n")
    with pytest.raises(PlanError, match="a loop's 'until' takes the quantities"):
        parse_plan("name: x\nsteps:\n  - repeat: 3\n    until: rig.level >= 1\n    steps:\n"
                   "      - Rest for 1 minute\n")
    plan = parse_plan("name: x\nsteps:\n  - mode: rest\n    until: climate1.temperature <= "
                      "5 °C or step_time >= 1 h\n")
    from cellbench_core.plan import dump_plan
    from cellbench_core.plan.show import show_plan

    assert "climate1.temperature <= 5 °C" in show_plan(plan)
    again = parse_plan(dump_plan(plan))
    assert [s.until for s in again.steps] == [s.until for s in plan.steps]  # type: ignore[union-attr]


class Collect:
    """A notifier that keeps what it is told (a stand-in for mail and MQTT notifiers)."""

    def __init__(self, settings: Any) -> None:
        self.prefix = settings.prefix
        self.events: list[tuple[Any, ...]] = []
        self.closed = False

    @hookimpl
    def cellbench_test_started(self, event: Any) -> None:
        self.events.append((self.prefix, "started", event.test_id, event.channel))

    @hookimpl
    def cellbench_test_finished(self, event: Any) -> None:
        self.events.append((self.prefix, "finished", event.test_id, event.status.value))

    def close(self) -> None:
        self.closed = True


class CollectSettings(BaseModel, extra="forbid"):
    prefix: str


class CollectPlugin:
    @hookimpl
    def cellbench_notifiers(self) -> list[Descriptor]:
        return [Descriptor(Kind.NOTIFIER, "collect", f"{_MODULE}:Collect",
                           "keeps the events it is told", CollectSettings)]


_MODULE = "cellbench_test_notifier"


def test_notifiers_get_the_station_events(db: Database, monkeypatch: pytest.MonkeyPatch,
                                          serve_until: Callable[..., None]) -> None:
    module = types.ModuleType(_MODULE)
    module.Collect = Collect  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, _MODULE, module)
    manager = PluginManager()
    manager.load()
    assert manager.register("collector", CollectPlugin()) == ""
    with pytest.raises(StationError, match=r"notifiers\[0\]\.settings\.colour: unknown key "
                                           r"\(expected one of: prefix\)"):
        Station(station_from_dict(config(db, notifiers=[
            {"kind": "collect", "settings": {"prefix": "a", "colour": 1}}])), manager)
    with pytest.raises(StationError, match=r"notifiers\[0\]\.kind: no notifier called 'mail'"):
        Station(station_from_dict(config(db, notifiers=[{"kind": "mail"}])), manager)
    station = Station(station_from_dict(config(db, notifiers=[
        {"kind": "collect", "settings": {"prefix": "lab"}}])), manager)
    notifier = station.notifiers[0][1]
    queue = TestQueue(db)
    entry = queue.add(2, REST)
    service = StationService(station, db, VirtualClock(), manager.hook)
    serve_until(service)
    test_id = queue.entry(entry).test_id  # type: ignore[union-attr]
    assert notifier.events == [("lab", "started", test_id, "2"),
                               ("lab", "finished", test_id, "finished")]
    assert notifier.closed

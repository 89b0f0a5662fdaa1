"""OSI devices and climate chambers in the station file: checked keys, attached to their
channels, read once per sample period, recorded with the samples of the tests that see them, a
chamber's temperature reaching the simulated cells inside it; safety limits on device signals,
and device writes from plans' set steps and the station's on_start and on_stop."""

from __future__ import annotations

import asyncio
import logging
import math
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
     r"^<station>: chambers\[0\]\.name: 'a' is also the name of devices\[0\]: each device and "
     r"chamber needs a name of its own"),
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
        return (SignalInfo("level", "V"), SignalInfo("switch", "", writable=True))

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
    with pytest.raises(StationError, match=r"notifiers\[0\]\.kind: no notifier called 'pager'"):
        Station(station_from_dict(config(db, notifiers=[{"kind": "pager"}])), manager)
    with pytest.raises(StationError, match=r"notifiers\[1\]: 'collect' is also the name of "
                                           r"notifiers\[0\]: give each a name ="):
        station_from_dict(config(db, notifiers=[{"kind": "collect"}, {"kind": "collect"}]))
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


def serve_queue(db: Database, station: Station, plans: Sequence[tuple[int, str]],
                serve_until: Callable[..., None], **serve: Any) -> list[int]:
    """Queue ``plans`` (channel, plan text) on ``station``, serve until they have run (or as
    ``serve`` says); the queue entries' ids."""
    queue = TestQueue(db)
    entries = [queue.add(channel, plan, plan_source="plan.yaml") for channel, plan in plans]
    serve_until(StationService(station, db, VirtualClock(), PluginManager().hook), **serve)
    return entries


def started_test(db: Database, entry: int) -> int:
    found = TestQueue(db).entry(entry)
    assert found is not None and found.test_id is not None, found
    return found.test_id


def alarms(db: Database, test_id: int) -> list[str]:
    return [e.message for e in db.events(test_id) if e.kind == "alarm"]


def writes(db: Database, test_id: int) -> list[str]:
    return [e.message for e in db.events(test_id) if e.kind == "device_write"]


WARM_WATCH = """\
name: warm watch
limits:
  rig.temperature_c: {max: 26.5 °C, for: 2 min}
steps:
  - Rest for 3 hours
"""


def test_a_device_signal_beyond_its_limit_for_its_delay_trips_the_test(
        db: Database, serve_until: Callable[..., None]) -> None:
    station = build(config(db, devices=[{
        "kind": "sim", "name": "rig", "channels": "1-2", "on_stop": {"heater_power_w": 0}}]))
    unlimited = WARM_WATCH.replace("max: 26.5 °C", "max: 40 °C")
    entries = serve_queue(db, station, [(1, WARM_WATCH), (2, unlimited)], serve_until)
    tripped, calm = (started_test(db, entry) for entry in entries)
    test = db.test(tripped)
    assert test is not None and test.status is TestStatus.STOPPED
    samples = db.samples(tripped, ["test_time_s", "rig.temperature_c"])
    beyond = samples["test_time_s"][samples["rig.temperature_c"] > 26.5]
    # It tripped on the first sample 2 minutes after the sensor's sine crossed 26.5 °C
    # (samples every 30 s), not before.
    assert len(beyond) == 5 and beyond[-1] - beyond[0] == 120.0
    assert samples["test_time_s"][-1] == beyond[-1]
    last = samples["rig.temperature_c"][-1]
    message = (f"safety limit rig.temperature_c max 26.5 °C (device 'rig'): measured "
               f"{last:.4g} °C for 120 s")
    assert alarms(db, tripped) == [f"channel 1: {message}"]
    assert db.steps(tripped)[0].end_reason == message
    assert writes(db, tripped) == ["rig.heater_power_w = 0 W (on_stop)"]
    other = db.test(calm)
    assert other is not None and other.status is TestStatus.FINISHED and not alarms(db, calm)


def test_a_bare_number_limits_a_signal_in_its_own_unit(
        db: Database, serve_until: Callable[..., None]) -> None:
    station = build(config(db, devices=[{"kind": "sim", "name": "rig", "channels": "1-2"}]))
    plan = "name: p\nlimits: {{rig.pressure_kpa: {{min: {}}}}}\nsteps: [Rest for 10 minutes]\n"
    entries = serve_queue(db, station, [(1, plan.format("101.4")), (2, plan.format("100"))],
                          serve_until)
    low, fine = (started_test(db, entry) for entry in entries)
    assert alarms(db, low) == ["channel 1: safety limit rig.pressure_kpa min 101.4 kPa "
                               "(device 'rig'): measured 101.3 kPa"]
    assert len(db.samples(low, ["seq"])["seq"]) == 1  # at once: it has no delay
    assert db.test(fine).status is TestStatus.FINISHED  # type: ignore[union-attr]


def test_a_missing_signal_trips_its_limit_after_the_delay(
        db: Database, serve_until: Callable[..., None]) -> None:
    station = build(config(db, devices=[{"kind": "sim", "name": "broken", "channels": "1-3"}]))
    station.devices[0] = (station.devices[0][0], Flaky())
    plan = ("name: p\nlimits: {{broken.level: {{max: 5 V{}}}}}\n"
            "steps: [Rest for 10 minutes]\n")
    ends_only = "name: p\nsteps: [{mode: rest, until: broken.level >= 1 V, for: 5 min}]\n"
    entries = serve_queue(db, station, [(1, plan.format(", for: 90 s")), (2, plan.format("")),
                                        (3, ends_only)], serve_until)
    delayed, at_once, ending = (started_test(db, entry) for entry in entries)
    assert alarms(db, delayed) == ["channel 1: safety limit broken.level max 5 V (device "
                                   "'broken'): no reading (missing or not a number) for 90 s"]
    assert db.samples(delayed, ["test_time_s"])["test_time_s"].tolist() == [30, 60, 90, 120]
    assert len(db.samples(at_once, ["seq"])["seq"]) == 1
    assert db.test(at_once).status is TestStatus.STOPPED  # type: ignore[union-attr]
    # Without a limit on it, a missing signal only meets no end condition.
    assert db.test(ending).status is TestStatus.FINISHED  # type: ignore[union-attr]
    assert not alarms(db, ending)


HEAT = """\
name: heat
steps:
  - Rest for 10 minutes
  - set: {rig.heater_power_w: 10 W}
  - Rest for 10 minutes
  - set: {rig.heater_power_w: 0}
  - Rest for 10 minutes
"""


def test_set_steps_and_the_station_write_device_signals(
        db: Database, serve_until: Callable[..., None]) -> None:
    station = build(config(db, devices=[{
        "kind": "sim", "name": "rig", "channels": "1",
        "on_start": {"heater_power_w": 4}, "on_stop": {"heater_power_w": 0}}]))
    entries = serve_queue(db, station, [(1, HEAT)], serve_until)
    test_id = started_test(db, entries[0])
    assert db.test(test_id).status is TestStatus.FINISHED  # type: ignore[union-attr]
    assert writes(db, test_id) == [
        "rig.heater_power_w = 4 W (on_start)", "rig.heater_power_w = 10 W (plan line 4)",
        "rig.heater_power_w = 0 W (plan line 6)", "rig.heater_power_w = 0 W (on_stop)"]
    samples = db.samples(test_id, ["step_index", "rig.heater_power_w", "rig.temperature_c"])
    heater = {step: set(samples["rig.heater_power_w"][samples["step_index"] == step].tolist())
              for step in range(3)}
    assert heater == {0: {4.0}, 1: {10.0}, 2: {0.0}}  # each written before its step's samples
    # The heater warmed the sensor: 0.5 K per watt on top of its slow sine.
    temperature = samples["rig.temperature_c"]
    steps = samples["step_index"]
    assert temperature[steps == 1][0] - temperature[steps == 0][-1] > 2.5
    assert temperature[steps == 2][0] - temperature[steps == 1][-1] < -4.5
    stored = [e for e in db.events(test_id) if e.kind == "device_write"][1]
    assert stored.data == {"signal": "rig.heater_power_w", "value": 10.0, "unit": "W",
                           "source": "plan line 4"}


def test_on_stop_is_written_when_the_station_stops_a_test(
        db: Database, serve_until: Callable[..., None]) -> None:
    station = build(config(db, devices=[{"kind": "sim", "name": "rig", "channels": "1",
                                         "on_stop": {"heater_power_w": 0}}]))
    queue = TestQueue(db)
    entry = queue.add(1, "name: long\nsteps: [Rest for 100 hours]\n")

    def running() -> bool:
        found = queue.entry(entry)
        return found is not None and found.test_id is not None and len(
            db.samples(found.test_id, ["seq"])["seq"]) > 3

    serve_until(StationService(station, db, VirtualClock(), PluginManager().hook), running)
    test_id = started_test(db, entry)
    assert db.test(test_id).status is TestStatus.STOPPED  # type: ignore[union-attr]
    assert writes(db, test_id) == ["rig.heater_power_w = 0 W (on_stop)"]


def test_a_failed_write_fails_the_test_with_its_output_off(
        db: Database, serve_until: Callable[..., None]) -> None:
    station = build(config(db, devices=[
        {"kind": "sim", "name": "broken", "channels": "1", "on_start": {"switch": 1},
         "on_stop": {"switch": 0}},
        {"kind": "sim", "name": "rig", "channels": "2"}]))
    station.devices[0] = (station.devices[0][0], Flaky())
    failing_step = HEAT.replace("rig.heater_power_w: 10 W", "rig.heater_power_w: 10 W, "
                                "rig.temperature_c: 1")
    entries = serve_queue(db, station, [(1, HEAT.replace("rig.", "broken.").replace(
        "heater_power_w", "switch").replace(" W}", "}")), (2, failing_step)], serve_until)
    refused_start = started_test(db, entries[0])
    test = db.test(refused_start)
    assert test is not None and test.status is TestStatus.FAILED
    start = "writing broken.switch = 1 (on_start) failed: flaky: no answer"
    stop = "writing broken.switch = 0 (on_stop) failed: flaky: no answer"
    assert test.end_reason == f"{start}; {stop}"
    assert alarms(db, refused_start) == [f"channel 1: {start}", f"channel 1: {stop}"]
    assert db.steps(refused_start) == []  # no step ran
    # A plan writing a read-only signal does not start.
    refused = TestQueue(db).entry(entries[1])
    assert refused is not None and refused.status is QueueStatus.FAILED
    assert refused.error == ("plan.yaml:4: set rig.temperature_c: signal 'rig.temperature_c' is "
                             "read-only")


@pytest.mark.parametrize(("step", "message"), [
    ("{rig.heater_power_w: 60 W}",
     "plan.yaml:2: set rig.heater_power_w: 60 W is beyond the range of signal "
     "'rig.heater_power_w' (0..50 W)"),
    ("{rig.heater_power_w: 5 V}", "plan.yaml:2: set rig.heater_power_w: signal "
     "'rig.heater_power_w' is in 'W'; give it a bare number in 'W' or a value of its kind, not "
     "voltage"),
    ("{rig.heater: 5}", "plan.yaml:2: set rig.heater: signal 'rig.heater' is not recorded on "
     "channel 1 (its signals: climate.temperature, rig.heater_power_w, rig.pressure_kpa, "
     "rig.temperature_c"),
    ("{climate.temperature: 5 °C}", "plan.yaml:2: set climate.temperature: climate.temperature "
     "is a chamber's signal; chambers are set by chamber steps"),
])
def test_plan_writes_are_checked_against_the_devices_before_a_test_starts(
        db: Database, serve_until: Callable[..., None], step: str, message: str) -> None:
    station = build(config(db, devices=[{"kind": "sim", "name": "rig", "channels": "1"}],
                           chambers=[{"kind": "sim", "name": "climate", "channels": "1"}]))
    entries = serve_queue(db, station, [(1, f"name: p\nsteps: [{{set: {step}}}, Rest for 1 s]\n"),
                                        (1, "name: p\nlimits: {rig.nope: {max: 1}}\n"
                                            "steps: [Rest for 1 s]\n")], serve_until)
    first, second = (TestQueue(db).entry(entry) for entry in entries)
    assert first is not None and first.status is QueueStatus.FAILED
    assert (first.error or "").startswith(message)
    assert second is not None and second.status is QueueStatus.FAILED
    assert (second.error or "").startswith("plan.yaml:2: limits.rig.nope: signal 'rig.nope' is "
                                           "not recorded on channel 1")
    assert db.tests() == []  # nothing started


@pytest.mark.parametrize(("device", "message"), [
    ({"on_stop": {"heatr_power_w": 0}}, r"devices\[0\]\.on_stop\.heatr_power_w: device 'rig' "
     r"has no signal 'heatr_power_w' \(did you mean 'heater_power_w'\?\) \(its signals: "
     r"temperature_c, heater_power_w, pressure_kpa\)"),
    ({"on_start": {"pressure_kpa": 1}}, r"devices\[0\]\.on_start\.pressure_kpa: signal "
     r"'pressure_kpa' is read-only"),
    ({"on_start": {"heater_power_w": 51}}, r"devices\[0\]\.on_start\.heater_power_w: 51 W is "
     r"beyond the range of signal 'heater_power_w' \(0\.\.50 W\)"),
])
def test_on_start_and_on_stop_are_checked_when_the_station_opens(
        db: Database, device: dict[str, Any], message: str) -> None:
    station = build(config(db, devices=[{"kind": "sim", "name": "rig", **device}]))
    with pytest.raises(StationError, match=message):
        asyncio.run(station.open(VirtualClock()))
    assert station.channels == []  # everything opened was closed again


def test_on_stop_values_must_be_finite_numbers(db: Database) -> None:
    with pytest.raises(StationError, match=r"devices\[0\]\.on_stop\.heater_power_w: Input "
                                           r"should be a finite number"):
        build(config(db, devices=[{"kind": "sim", "name": "rig",
                                   "on_stop": {"heater_power_w": math.nan}}]))

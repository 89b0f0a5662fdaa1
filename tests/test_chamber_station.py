"""A station with three climate chambers of three kinds — a Binder (Modbus RTU over TCP), a
Weiss/Vötsch (SIMSERV) and an ESPEC (ASCII over a TCP serial server), each an emulator of its
controller on a loopback port — and three simulated channels in each, built from a station file
and running plans with chamber steps: the chambers change only once their last channel arrives,
the recorded chamber temperature follows each emulator's thermal model, and a door opened in one
chamber pauses the tests inside (output off) until it is closed, without losing a sample, while
the other chambers' tests carry on.

The station runs on the virtual clock, as fast as the CPU allows, and so do the emulators' thermal
models: the ESPEC and Binder emulators read the station's clock (their ``clock`` option), and the
SIMSERV emulator, whose model follows the wall clock, is run at a negligible wall-clock pace and
moved on by the station's clock as virtual time passes (its ``advance``). Every chamber read then
happens at the virtual time of its tick, so the models' states at each tick are exact and the
run (several thousand simulated seconds) takes a few seconds of wall time.

The expected failures at the end hold faults of the station found here (their reasons say
which); each passes, and so fails as unexpected, once its fault is mended.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_binder.emulator import BinderEmulator, BinderModel
from cellbench_core.events import TestStatus
from cellbench_core.plan import parse_plan
from cellbench_core.plugins import loaded_plugins
from cellbench_core.runner import Runner, TestOutcome
from cellbench_core.station import Station, load_station
from cellbench_core.storage import Database, SampleWriter, open_database
from cellbench_espec.emulator import EspecEmulator
from cellbench_hal import ChamberState, VirtualClock
from cellbench_sdk.emulation import approach
from cellbench_simserv.emulator import SimservEmulator
from cellbench_simserv.protocol import (
    MANUAL_OPERATION,
    SEPARATOR,
    TEMPERATURE,
    Command,
    format_number,
)

PERIOD_S = 10.0
AMBIENT_C = 25.0
#: Every emulated chamber: dT/dt = (setpoint - T) / TAU_S, at most RAMP_K_PER_S either way.
TAU_S = 120.0
RAMP_K_PER_S = 0.1
#: How long the channels in each chamber rest before its chamber step (minutes).
RESTS_MIN = (5, 10, 15)
#: Each chamber's setpoint, and when its door is open (clock seconds; the windows do not overlap
#: and fall inside every test's discharge step).
SETPOINT_C = {"alpha": 40.0, "beta": 10.0, "gamma": 35.0}
DOOR_OPEN_S = {"alpha": (1500.0, 1680.0), "beta": (1740.0, 1920.0), "gamma": (1980.0, 2160.0)}
#: How long a chamber may be out of the band its chamber step found it stable in: long enough
#: for a Binder or SIMSERV chamber, which stops conditioning while its door is open, to get back
#: after it is closed, so that the door is the one fault here.
BAND_GRACE = "15 min"
#: Chamber name -> its channels' numbers in the station.
CHANNELS = {"alpha": (1, 2, 3), "beta": (4, 5, 6), "gamma": (7, 8, 9)}
DISCHARGE_MIN = 20.0


def plan(rest_min: int, celsius: float) -> str:
    return f"""\
name: rest {rest_min} min, then {celsius:g} °C, then discharge
capacity: 2.5 Ah
steps:
  - Rest for {rest_min} min
  - {{chamber: {celsius:g} °C, within: 1 K, stable: 2 min, timeout: 2 h}}
  - Discharge at 0.5C for {DISCHARGE_MIN:g} min
"""


@dataclass
class Emulated:
    """One chamber's emulator, how to read its model's state, and how to open its door or
    make it garble its replies."""

    emulator: Any
    setpoint: Callable[[], float]
    temperature: Callable[[], float]
    door: Callable[[bool], None]
    garble: Callable[[bool], None]


@dataclass(frozen=True)
class Noted:
    """A chamber's state as its emulator's model had it when a tick was over."""

    setpoint_c: float
    temperature_c: float


class StationClock(VirtualClock):
    """The virtual clock, as fast as the CPU allows, which also opens and closes the doors when
    their times come, moves the SIMSERV emulator's model on with virtual time, and notes every
    chamber's state each time the runner waits for its next tick (once a tick is over)."""

    def __init__(self) -> None:
        super().__init__()
        self.chambers: dict[str, Emulated] = {}
        self.follow: list[SimservEmulator] = []
        self.script: list[tuple[float, Callable[[], None]]] = []
        self.noted: dict[float, dict[str, Noted]] = {}

    def note(self) -> None:
        """Note every chamber's state now."""
        self.noted[self.now()] = {name: Noted(c.setpoint(), c.temperature())
                                  for name, c in self.chambers.items()}

    async def sleep_until(self, t: float) -> None:
        now = self.now()
        self.note()
        due = [action for when, action in self.script if when <= t]
        self.script = [(when, action) for when, action in self.script if when > t]
        for action in due:
            action()
        for emulator in self.follow:
            emulator.advance(max(0.0, t - now))
        await super().sleep_until(t)


@asynccontextmanager
async def emulators(clock: StationClock) -> AsyncIterator[dict[str, Emulated]]:
    """The three emulated controllers, listening on free loopback ports, their models on
    ``clock``; stopped afterwards."""
    binder = BinderEmulator(port=0, framing="rtu-over-tcp", model=BinderModel(
        ambient_c=AMBIENT_C, time_constant_s=TAU_S, max_ramp_k_per_min=RAMP_K_PER_S * 60,
        clock=clock.now))
    # Its model follows the wall clock: at this pace a whole test adds nanoseconds to it.
    simserv = SimservEmulator(port=0, speed=1e-9, ambient_c=AMBIENT_C, time_constant_s=TAU_S,
                              max_ramp_k_per_min=RAMP_K_PER_S * 60)
    espec = EspecEmulator(ambient_c=AMBIENT_C, time_constant_s=TAU_S,
                          ramp_c_per_min=RAMP_K_PER_S * 60, clock=clock.now)
    async with binder, simserv, espec:
        clock.follow.append(simserv)
        yield {
            "alpha": Emulated(binder, lambda: binder.model.setpoint_c,
                              lambda: binder.model.temperature_c,
                              lambda is_open: setattr(binder.faults, "door_open", is_open),
                              lambda garbled: setattr(binder.faults, "garble", garbled)),
            "beta": Emulated(simserv, lambda: simserv.setpoints[TEMPERATURE],
                             lambda: simserv.temperature_c,
                             lambda is_open: setattr(simserv, "door_open", is_open),
                             lambda garbled: setattr(simserv.faults, "garbled", garbled)),
            "gamma": Emulated(espec, lambda: espec.setpoint_c, lambda: espec.temperature_c,
                              lambda is_open: setattr(espec.faults, "door_open", is_open),
                              lambda garbled: setattr(espec.faults, "garbled", garbled)),
        }


def station_file(path: Path, chambers: dict[str, Emulated]) -> Path:
    """The station: nine simulated channels, three in each emulated chamber (whose replies may
    take seconds on a loaded machine: the wall clock runs on however fast the virtual one is)."""
    ports = {name: c.emulator.port for name, c in chambers.items()}
    path.write_text(f"""\
[station]
name = "three chambers"
database = "sqlite:///{path.parent / 'station.db'}"
sample_period = "{PERIOD_S:g} s"
clock = "virtual"
device_timeout = "5 s"

[[channels]]
driver = "sim"
settings = {{ count = 9, capacity_spread = 0.0, resistance_spread = 0.0 }}

[[chambers]]
kind = "binder"
name = "alpha"
channels = "1-3"
band_grace = "{BAND_GRACE}"
[chambers.settings]
address = "127.0.0.1:{ports['alpha']}"
framing = "rtu-over-tcp"
unit = 1
timeout_s = 5.0

[[chambers]]
kind = "simserv"
name = "beta"
channels = "4-6"
band_grace = "{BAND_GRACE}"
[chambers.settings]
host = "127.0.0.1"
port = {ports['beta']}
timeout_s = 5.0

[[chambers]]
kind = "espec"
name = "gamma"
channels = "7-9"
on_fault = "pause"
band_grace = "{BAND_GRACE}"
[chambers.settings]
address = "127.0.0.1:{ports['gamma']}"
timeout_s = 5.0
""", encoding="utf-8")
    return path


@dataclass
class StationRun:
    """A finished run of the station: its database, each channel's outcome (by channel number),
    the emulators, the chambers' states noted at every tick, and which chamber the station read
    when."""

    db: Database
    outcomes: dict[int, TestOutcome]
    chambers: dict[str, Emulated]
    noted: dict[float, dict[str, Noted]]
    reads: list[tuple[str, float]]
    samples: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    def samples_of(self, channel: int) -> dict[str, np.ndarray]:
        if channel not in self.samples:
            self.samples[channel] = self.db.samples(self.outcomes[channel].test_id)
        return self.samples[channel]


def noting_reads(name: str, emulated: Emulated, read: Callable[[], Awaitable[ChamberState]],
                 clock: VirtualClock, reads: list[tuple[str, float]],
                 garbled: tuple[float, int] | None) -> Callable[[], Awaitable[ChamberState]]:
    """Chamber ``name``'s ``read``, noting in ``reads`` when it was called; ``garbled``: the
    read that gets garbled replies from the controller (clock seconds, and which read of that
    tick, from 1)."""

    async def noted_read() -> ChamberState:
        now = clock.now()
        reads.append((name, now))
        emulated.garble((now, reads.count((name, now))) == garbled)
        try:
            return await read()
        finally:
            emulated.garble(False)

    return noted_read


def run_station(directory: Path, doors: dict[str, tuple[float, float]],
                garbled: dict[str, tuple[float, int]] | None = None) -> StationRun:
    """Start the emulators, write the station file, build the station from it as ``cellbench
    run`` does, run every channel's plan to its end, and close it all; ``doors``: when each
    chamber's door is open (clock seconds, from and until); ``garbled``: the read of each
    chamber named that gets garbled replies (clock seconds, and which read of that tick)."""
    clock = StationClock()
    reads: list[tuple[str, float]] = []

    async def main() -> tuple[dict[str, Emulated], dict[int, TestOutcome], Database]:
        async with emulators(clock) as chambers:
            clock.chambers = chambers
            for name, (opened, closed) in doors.items():
                door = chambers[name].door
                clock.script += [(opened, partial(door, True)), (closed, partial(door, False))]
            config = load_station(station_file(directory / "station.toml", chambers))
            plugins = loaded_plugins().view(disable=config.plugins.disable,
                                            require=config.plugins.enable)
            station = Station(config, plugins, directory)
            db = open_database(config.station.database)
            writer = SampleWriter(db)
            runner = Runner(db, writer, clock, sample_period_s=config.station.sample_period,
                            hooks=plugins.hook, station=config.station.name,
                            device_timeout_s=config.station.device_timeout)
            try:
                await station.open(clock)
                for section, chamber in station.chambers:
                    chamber.read = noting_reads(  # type: ignore[method-assign,assignment]
                        section.name, chambers[section.name], chamber.read, clock, reads,
                        (garbled or {}).get(section.name))
                requests = []
                for k, (name, numbers) in enumerate(CHANNELS.items()):
                    # A different channel arrives last in each chamber.
                    rests = RESTS_MIN[k:] + RESTS_MIN[:k]
                    for number, rest in zip(numbers, rests, strict=True):
                        parsed = parse_plan(plan(rest, SETPOINT_C[name]), f"{name}.yaml",
                                            tables=station.tables)
                        requests.append(station.request(station.channels[number - 1], parsed))
                outcomes = await runner.run(requests)
                clock.note()  # after the last tick
            finally:
                await station.close()
                writer.close()
            return chambers, {int(o.channel): o for o in outcomes}, db

    chambers, outcomes, db = asyncio.run(main())
    return StationRun(db, outcomes, chambers, clock.noted, reads)


@pytest.fixture(scope="module")
def station_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationRun]:
    """The station run once for the tests of this module."""
    run = run_station(tmp_path_factory.mktemp("three-chambers"), DOOR_OPEN_S)
    yield run
    run.db.close()


def chamber_step_start(run: StationRun, channel: int) -> float:
    """When the channel reached its chamber step (test seconds; every test starts at 0)."""
    [step] = [s for s in run.db.steps(run.outcomes[channel].test_id) if s.step_index == 1]
    return step.start_test_time_s


def test_every_test_ends_its_plan(station_run: StationRun) -> None:
    assert sorted(station_run.outcomes) == list(range(1, 10))
    for outcome in station_run.outcomes.values():
        assert outcome.status is TestStatus.FINISHED, outcome
        assert outcome.reason == "plan complete"
        # Every test started at 0 s of the station's clock: test time is clock time here.
        assert station_run.samples_of(int(outcome.channel))["test_time_s"][0] == PERIOD_S


def test_no_chamber_changes_before_its_last_channel_arrives(station_run: StationRun) -> None:
    for name, numbers in CHANNELS.items():
        arrivals = sorted(chamber_step_start(station_run, n) for n in numbers)
        assert arrivals == pytest.approx([r * 60.0 for r in RESTS_MIN], abs=PERIOD_S)
        last = arrivals[-1]
        setpoints = {t: noted[name].setpoint_c for t, noted in station_run.noted.items()}
        before = {setpoint for t, setpoint in setpoints.items() if t < last}
        assert before == {AMBIENT_C}, f"chamber {name} changed before its last channel arrived"
        # Set at the tick its last channel arrived, and never again.
        changed = min(t for t, setpoint in setpoints.items() if setpoint != AMBIENT_C)
        assert changed == last
        assert {s for t, s in setpoints.items() if t >= last} == {SETPOINT_C[name]}
        # The channels that arrived first rested (output off) while they waited.
        for number in numbers:
            samples = station_run.samples_of(number)
            t = samples["test_time_s"]
            waiting = (t > chamber_step_start(station_run, number)) & (t <= last)
            assert np.all(samples["current_a"][waiting] == 0.0)
    # The controllers got each setpoint once, the start command once.
    espec, simserv = (station_run.chambers[n].emulator for n in ("gamma", "beta"))
    assert [c for c in espec.received if c.startswith(("TEMP,", "MODE,"))] == [
        "TEMP, S35.0", "MODE, CONSTANT"]
    changes = (Command.SET_SETPOINT, Command.SET_DIGITAL_OUTPUT)
    sent = [line.split(SEPARATOR) for line in simserv.received]
    assert [fields[2:] for fields in sent if int(fields[0]) in changes] == [
        [str(TEMPERATURE), format_number(10.0)], [str(MANUAL_OPERATION), "1"]]


def test_the_recorded_chamber_temperature_follows_the_thermal_model(
        station_run: StationRun) -> None:
    for name, numbers in CHANNELS.items():
        column = f"{name}.temperature"
        opened, closed = DOOR_OPEN_S[name]
        for number in numbers:
            samples = station_run.samples_of(number)
            # Only the channel's own chamber is recorded with its samples.
            assert {c for c in samples if "." in c} == {column}
            t, recorded = samples["test_time_s"], samples[column]
            # Each sample holds what the chamber's model said at its tick (the SIMSERV and
            # ESPEC controllers answer with one decimal) ...
            model = np.array([station_run.noted[float(x)][name].temperature_c for x in t])
            door = (t >= opened) & (t < closed)
            assert np.all(np.isnan(recorded[door]))  # ... none while the door was open ...
            assert np.abs(recorded[~door] - model[~door]).max() <= 0.05 + 1e-6
            # ... and that model is a first-order approach to the setpoint, ramp-limited,
            # from ambient when the chamber was set (until the door opened).
            start = min(when for when, noted in station_run.noted.items()
                        if noted[name].setpoint_c != AMBIENT_C)
            before = (t < start)
            assert np.abs(recorded[before] - AMBIENT_C).max() <= 0.05 + 1e-6
            approaching = (t >= start) & (t < opened)
            expected = [approach(AMBIENT_C, SETPOINT_C[name], x - start, TAU_S, RAMP_K_PER_S)
                        for x in t[approaching]]
            assert np.abs(recorded[approaching] - expected).max() <= 0.05 + 1e-6
            # The chamber step ended once the chamber had been within 1 K for 2 minutes.
            [step] = [s for s in station_run.db.steps(station_run.outcomes[number].test_id)
                      if s.step_index == 1]
            within = (t >= start) & (np.abs(recorded - SETPOINT_C[name]) <= 1.0)
            first_within = float(t[within][0])
            assert step.end_test_time_s == pytest.approx(first_within + 120.0, abs=PERIOD_S)


def test_a_door_opened_mid_step_pauses_that_chamber_only_and_loses_no_sample(
        station_run: StationRun) -> None:
    door_text = {"alpha": "door open", "beta": "message 1: Door open", "gamma": "alarm 1"}
    for name, numbers in CHANNELS.items():
        opened, closed = DOOR_OPEN_S[name]
        for number in numbers:
            outcome = station_run.outcomes[number]
            samples = station_run.samples_of(number)
            seq, t, current = samples["seq"], samples["test_time_s"], samples["current_a"]
            assert list(seq) == list(range(1, len(seq) + 1))  # no sample lost ...
            assert np.all(np.diff(t) == PERIOD_S)  # ... and one at every tick, paused or not
            # Output off from the first tick that saw the door open until it was closed.
            door = (t >= opened) & (t < closed)
            assert door.sum() == (closed - opened) / PERIOD_S
            assert np.all(current[door] == 0.0)
            discharging = (t > closed + PERIOD_S) & (t <= closed + 5 * 60.0)
            assert np.all(current[discharging] == pytest.approx(-1.25))
            # Meanwhile the other chambers' tests went on discharging.
            for other, (other_opened, other_closed) in DOOR_OPEN_S.items():
                if other != name:
                    elsewhere = (t >= other_opened) & (t < other_closed)
                    assert np.all(current[elsewhere] == pytest.approx(-1.25)), (name, other)
            # The discharge lasted its 20 minutes with the pause not counted.
            [discharge] = [s for s in station_run.db.steps(outcome.test_id)
                           if s.step_index == 2]
            assert discharge.ah == pytest.approx(-1.25 * DISCHARGE_MIN / 60.0, rel=0.02)
            events = [(e.kind, e.message) for e in station_run.db.events(outcome.test_id)
                      if e.kind in ("alarm", "chamber_back")]
            assert [kind for kind, _ in events] == ["alarm", "chamber_back"], events
            assert f"chamber {name!r}" in events[0][1]
            assert door_text[name] in events[0][1]
            assert events[0][1].endswith("the test is paused, output off, until the chamber "
                                         "is back")
            assert events[1][1] == f"chamber {name!r} is back: the test goes on"


def test_a_tick_reads_each_chamber_once(station_run: StationRun) -> None:
    [(most, times)] = Counter(station_run.reads).most_common(1)
    assert times == 1, f"chamber {most[0]} was read {times} times at {most[1]:g} s"


def test_a_door_open_while_the_temperature_moves_is_one_alarm(tmp_path: Path) -> None:
    # The ESPEC chamber's door opens while it is still heating towards its setpoint.
    heating = max(RESTS_MIN) * 60.0 + 60.0
    run = run_station(tmp_path, {"gamma": (heating, heating + 120.0)})
    for number in CHANNELS["gamma"]:
        outcome = run.outcomes[number]
        assert outcome.status is TestStatus.FINISHED
        kinds = [e.kind for e in run.db.events(outcome.test_id)
                 if e.kind in ("alarm", "chamber_back")]
        assert kinds == ["alarm", "chamber_back"]


def test_a_garbled_reply_while_channels_wait_for_the_chamber_pauses_their_tests(
        tmp_path: Path) -> None:
    # While the ESPEC chamber heats and its channels wait for it, the tick's read gets garbled
    # replies: the tests pause (on_fault = "pause") and go on.
    heating = max(RESTS_MIN) * 60.0 + 60.0
    run = run_station(tmp_path, {}, garbled={"gamma": (heating, 1)})
    assert run.reads.count(("gamma", heating)) == 1  # the garbled read took place
    for number in CHANNELS["gamma"]:
        outcome = run.outcomes[number]
        assert outcome.status is TestStatus.FINISHED, outcome
        events = [(e.kind, e.message) for e in run.db.events(outcome.test_id)
                  if e.kind in ("alarm", "chamber_back")]
        assert [kind for kind, _ in events] == ["alarm", "chamber_back"], events
        assert "is not ascii text; the test is paused, output off" in events[0][1]

"""``cellbench demo`` and ``cellbench run``: run plans with live progress and a summary."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from cellbench_core.cli.app import app, station_plugins
from cellbench_core.cli.console import EXIT_STORAGE_FAILED, console, fail
from cellbench_core.cli.database import opened
from cellbench_core.events import TestStatus
from cellbench_core.plan import Plan, PlanError, load_plan, parse_plan
from cellbench_core.plan.tables import lookup_tables
from cellbench_core.plots import PlotError, cycle_series, draw_cycles
from cellbench_core.plugins import PluginError, PluginManager
from cellbench_core.runner import RunError, Runner, TestOutcome, TestRequest
from cellbench_core.station import Station, StationConfig, StationError, load_station
from cellbench_core.storage import BatteryRecord, Database, SampleWriter, StorageFailure
from cellbench_core.storage.lease import LeaseHeld, StationLease
from cellbench_hal import Clock, DeviceError, RealClock, VirtualClock

#: Live display shows one bar per channel up to this many channels, then one bar for all.
_BARS_PER_CHANNEL_UP_TO = 16

DEMO_BATTERY = "demo-nmc-2.5Ah"


def _clock(speed: str) -> Clock:
    if speed == "real":
        return RealClock()
    if speed == "max":
        return VirtualClock()
    try:
        factor = float(speed)
    except ValueError:
        factor = float("nan")
    if not (factor > 0 and factor != float("inf")):
        fail(f"--speed: expected 'real', 'max' or a positive number like 100, not {speed!r}",
             code=2)
    return VirtualClock(factor)


@dataclass
class _Job:
    """What to run: the station, where results go, the clock, and which plan on which channel.

    ``requests`` is called once the station is open, when its channels are numbered.
    """

    station: Station
    db: Database
    clock: Clock
    requests: Callable[[Station], list[TestRequest]]
    interrupted: bool = False  # by SIGINT or SIGTERM


class _Live:
    """Progress bars (steps done of the plan's total) with cycle, U, I, T and the current step."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), console=console, transient=False)
        self.tasks: dict[str, TaskID] = {}

    def update(self) -> None:
        states = self.runner.snapshot()
        if not states:
            return
        if len(states) > _BARS_PER_CHANNEL_UP_TO:
            done = sum(s.step_no - (1 if s.running else 0) for s in states)
            total = sum(s.steps_total for s in states)
            running = sum(s.running for s in states)
            hours = max(s.test_time_s for s in states) / 3600
            key = "all"
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(
                    f"{len(states)} channels", total=total, detail="")
            self.progress.update(self.tasks[key], completed=done, detail=(
                f"{running} running, test time {hours:.1f} h, {self.runner.samples:,} samples"))
            return
        for s in states:
            if s.channel not in self.tasks:
                self.tasks[s.channel] = self.progress.add_task(
                    f"ch {s.channel:>3}", total=s.steps_total, detail="")
            done = s.step_no - (1 if s.running else 0)
            detail = (f"cyc {s.cycle:>3}  {s.voltage_v:6.3f} V {s.current_a:+7.3f} A "
                      f"{s.temperature_c:5.1f} °C  {s.step}" if s.running
                      else (s.outcome.reason if s.outcome else ""))
            self.progress.update(self.tasks[s.channel], completed=done, detail=detail)


async def _execute(job: _Job, runner: Runner, live: bool) -> list[TestOutcome]:
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        job.interrupted = True
        runner.stop(None, "stopped by operator")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        await job.station.open(job.clock)
        await job.station.start_notifiers(job.db)
        task = asyncio.create_task(runner.run(job.requests(job.station)))
        if live:
            display = _Live(runner)
            with display.progress:
                while not task.done():
                    await asyncio.wait({task}, timeout=0.25)
                    display.update()
        return await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await job.station.close()


def _run_job(job: _Job, sample_period_s: float, plugins: PluginManager, live: bool = True
             ) -> list[TestOutcome]:
    writer = SampleWriter(job.db, retry_s=job.station.config.station.storage_retry)
    runner = Runner(job.db, writer, job.clock, sample_period_s=sample_period_s,
                    hooks=plugins.hook, station=job.station.config.station.name,
                    device_timeout_s=job.station.config.station.device_timeout)
    started = time.monotonic()
    try:
        with StationLease(job.db, job.station.config.station.name):
            outcomes = asyncio.run(_execute(job, runner, live))
    except LeaseHeld as err:
        fail(str(err), code=2)
    except StorageFailure as err:
        fail(str(err), code=EXIT_STORAGE_FAILED)
    except (RunError, DeviceError, StationError) as err:
        fail(str(err), code=2 if isinstance(err, StationError) else 1)
    finally:
        with contextlib.suppress(StorageFailure):  # the failure is what the run reports
            writer.close()
    wall = time.monotonic() - started
    _summary(job.db, outcomes)
    console.print(f"{runner.samples:,} samples in {wall:.1f} s wall "
                  f"({runner.samples / max(wall, 1e-9):,.0f} samples/s); database: {job.db.url}")
    return outcomes


#: Exit code of ``run`` and ``demo`` when a test ended on a safety limit or a failure.
EXIT_NOT_COMPLETED = 3
#: Exit code of ``run`` and ``demo`` stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells do).
EXIT_INTERRUPTED = 130


def _exit_code(job: _Job, outcomes: list[TestOutcome]) -> int:
    """0 when every test ran its plan to the end; otherwise why not."""
    if job.interrupted:
        return EXIT_INTERRUPTED
    if any(o.status is not TestStatus.FINISHED for o in outcomes):
        return EXIT_NOT_COMPLETED
    return 0


#: Up to this many channels the summary has a row per channel; beyond, a row per cycle.
_SUMMARY_ROWS_PER_CHANNEL_UP_TO = 32


#: Up to this many capacities a summary row lists them all; beyond, first, last and the fade.
_CAPACITIES_LISTED_UP_TO = 6


@dataclass(frozen=True)
class _Measured:
    """What a test measured, for its summary row: the discharge capacity of each counted
    cycle (or, without a counting loop, of each discharging step), the mean coulombic
    efficiency of its cycles, and the energy discharged in all."""

    per_cycle: bool
    capacities: list[float]
    coulombic_efficiency: float
    discharged_wh: float

    def capacities_text(self) -> str:
        """The capacities, summarised as first, last and fade when there are many."""
        values = self.capacities
        if not values:
            return "-"
        if len(values) <= _CAPACITIES_LISTED_UP_TO:
            return " ".join(f"{ah:.3f}" for ah in values)
        fade = 100.0 * (values[-1] - values[0]) / values[0] if values[0] else math.nan
        return f"{values[0]:.3f} … {values[-1]:.3f} ({fade:+.1f} % over {len(values)})"


def _measured(db: Database, test_id: int) -> _Measured:
    cycles = [c for c in db.cycles(test_id) if c.cycle > 0]
    steps = db.steps(test_id)
    discharged_wh = sum(s.discharge_wh for s in steps if not math.isnan(s.discharge_wh))
    if cycles:
        efficiencies = [c.coulombic_efficiency for c in cycles
                        if not math.isnan(c.coulombic_efficiency)]
        return _Measured(True, [c.discharge_ah for c in cycles],
                         float(np.mean(efficiencies)) if efficiencies else math.nan,
                         discharged_wh)
    return _Measured(False, [s.discharge_ah for s in steps
                             if s.discharge_ah > 0 and not s.charge_ah > 0],
                     math.nan, discharged_wh)


def _summary(db: Database, outcomes: list[TestOutcome]) -> None:
    results = [(o, _measured(db, o.test_id)) for o in outcomes]
    if len(outcomes) > _SUMMARY_ROWS_PER_CHANNEL_UP_TO:
        _summary_by_cycle(results)
        return
    by_cycle = any(m.per_cycle for _, m in results)
    table = Table(title="Summary", title_justify="left",
                  caption="discharge capacity of each cycle" if by_cycle else
                  "discharge capacity of each discharging step (the plan counts no cycles)",
                  caption_justify="left")
    for column, justify in (("ch", "right"), ("test", "right"), ("cycles", "right"),
                            ("discharge capacity [Ah]", "left"), ("mean CE [%]", "right"),
                            ("total discharged [Wh]", "right"), ("end", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for outcome, measured in results:
        colour = {"finished": "green", "stopped": "yellow"}.get(outcome.status.value, "red")
        efficiency = measured.coulombic_efficiency
        table.add_row(outcome.channel, str(outcome.test_id),
                      str(len(measured.capacities)) if measured.per_cycle else "-",
                      measured.capacities_text(),
                      "-" if math.isnan(efficiency) else f"{100 * efficiency:.1f}",
                      f"{measured.discharged_wh:.2f}",
                      f"[{colour}]{outcome.reason}[/{colour}]")
    console.print(table)


def _summary_by_cycle(results: list[tuple[TestOutcome, _Measured]]) -> None:
    table = Table(title=f"Summary of {len(results)} channels: discharge capacity per cycle",
                  title_justify="left")
    for column in ("cycle", "channels", "mean [Ah]", "min [Ah]", "max [Ah]", "spread (sd) [Ah]"):
        table.add_column(column, justify="right")
    longest = max((len(m.capacities) for _, m in results if m.per_cycle), default=0)
    for n in range(longest):
        values = np.array([m.capacities[n] for _, m in results
                           if m.per_cycle and n < len(m.capacities)])
        table.add_row(str(n + 1), str(len(values)), f"{values.mean():.3f}", f"{values.min():.3f}",
                      f"{values.max():.3f}", f"{values.std():.4f}")
    console.print(table)
    reasons = Counter(f"{o.status.value}: {o.reason}" for o, _ in results)
    for reason, count in reasons.most_common():
        console.print(f"{count:>6} × {reason}")


def _battery(db: Database, name: str | None) -> BatteryRecord | None:
    if name is None:
        return None
    battery = db.battery(name)
    if battery is None:
        known = ", ".join(b.name for b in db.batteries()) or "none registered"
        fail(f"--battery: no battery called {name!r} (known: {known})", code=2)
    return battery


@app.command("run")
def run_command(
    plan: Annotated[Path, typer.Argument(help="Plan file (YAML); see `cellbench plan check`.",
                                         show_default=False)],
    channels: Annotated[str, typer.Option(
        help="Channels to run on: 3, 1-8, 1,3,5-6 or all.")] = "all",
    station: Annotated[Path | None, typer.Option(
        help="Station file (TOML). Without it: 8 simulated channels.")] = None,
    db: Annotated[str | None, typer.Option(
        help="Database URL, e.g. sqlite:///lab.db or postgresql+psycopg://host/db. "
             "Overrides the station file.")] = None,
    speed: Annotated[str, typer.Option(
        help="real: wall-clock time (needed for real hardware); N: simulated time N times "
             "faster; max: as fast as the CPU allows.")] = "real",
    battery: Annotated[str | None, typer.Option(
        help="Registered battery under test: its capacity sets C-rates, its limits tighten "
             "the plan's.")] = None,
) -> None:
    """Run PLAN on channels of a station until every channel has finished it.

    Each channel follows the plan on its own; every sample goes to the database. Ctrl-C stops
    all channels safely (output off) and keeps every sample.

    Exit codes: 0 every test ran its plan to the end; 3 a test ended on a safety limit or a
    failure (the summary says which and why); 130 interrupted by Ctrl-C or SIGTERM; 2 bad input
    (plan, station file, database URL, options) or another station runs on the database; 4 the
    database did not accept writes for `storage_retry` (outputs off, tests ended where that
    could be recorded) or as the run started (nothing started); 1 the run could not go on (a
    device error before the tests started).

    Example: cellbench run plans/capacity-check.yaml --channels 1-4 --speed max
    """
    try:
        config = load_station(station) if station else StationConfig()
    except StationError as err:
        fail(str(err), code=2)
    manager = station_plugins(config)
    try:
        parsed = load_plan(plan, tables=lookup_tables(manager.registry))
    except PlanError as err:
        fail(str(err), code=2)
    try:
        built = Station(config, manager)
    except (StationError, PluginError) as err:
        fail(str(err), code=2)
    clock = _clock(speed)
    with opened(db or config.station.database, create=True,
                busy_timeout_s=min(30.0, config.station.storage_retry)) as database:
        record = _battery(database, battery)

        def requests(ready: Station) -> list[TestRequest]:
            return [ready.request(ref, parsed, record) for ref in ready.select(channels)]

        job = _Job(built, database, clock, requests)
        outcomes = _run_job(job, config.station.sample_period, manager)
    raise typer.Exit(_exit_code(job, outcomes))


def _cycle_life_plan(cycles: int) -> Plan:
    """The demo's cycle-life plan with its loop set to ``cycles`` passes."""
    text = resources.files("cellbench_core.demo").joinpath("cycle-life.yaml").read_text(
        encoding="utf-8")
    text, loops = re.subn(r"^(  - repeat: )\d+$", rf"\g<1>{cycles}", text, flags=re.MULTILINE)
    assert loops == 1, "cycle-life.yaml has one loop at the top level"
    return parse_plan(text, source="cycle-life.yaml")


#: The demo's fade plot compares this many channels at most; more lines would be unreadable.
_FADE_PLOT_TESTS = 8


@app.command("demo")
def demo_command(
    channels: Annotated[int, typer.Option(min=1, max=100_000,
                                          help="Number of simulated channels.")] = 8,
    cycles: Annotated[int | None, typer.Option(
        min=1, max=10_000, help="Run a cycle-life plan of N 1C cycles instead, sampled once a "
        "minute, and draw the cells' fade.")] = None,
    fade_plot: Annotated[Path, typer.Option(
        help="Where --cycles draws capacity and efficiency per cycle.")] =
        Path("cellbench-demo-fade.png"),
    db: Annotated[str, typer.Option(help="Database URL for the results.")] =
        "sqlite:///cellbench-demo.db",
) -> None:
    """Run a simulated station: CC-CV cycles of 2.5 Ah NMC cells on every channel.

    The cells differ slightly (capacity, resistance), as real cells do, and age as they
    cycle. Time is simulated, so hours of cycling take seconds. Afterwards:
    `cellbench plot TEST --db ...` draws any test. Exit codes as for `cellbench run`.

    Example: cellbench demo --cycles 200 (a cycle-life test; ends with the fade plot's path)
    """
    if cycles is None:
        text = resources.files("cellbench_core.demo").joinpath("cccv-cycling.yaml").read_text(
            encoding="utf-8")
        plan = parse_plan(text, source="cccv-cycling.yaml")
    else:
        plan = _cycle_life_plan(cycles)
    config = StationConfig.model_validate({
        "station": {"name": "demo", "database": db,
                    "sample_period": "1 s" if cycles is None else "60 s"},
        "channels": [{"driver": "sim", "settings": {"count": channels, "seed": 2024}}],
    })
    manager = station_plugins(config)
    station = Station(config, manager)
    with opened(db, create=True) as database:
        console.print(f"Demo station: {channels} simulated channels, plan {plan.name!r}, "
                      f"results in [bold]{database.url}[/bold]")
        battery = database.battery(DEMO_BATTERY)
        if battery is None:
            database.add_battery(
                DEMO_BATTERY, chemistry="NMC-graphite", nominal_capacity_ah=2.5,
                nominal_voltage_v=3.7, voltage_max_v=4.25, voltage_min_v=2.45,
                current_max_charge_a=5.0, current_max_discharge_a=7.5, temperature_max_c=60.0,
                metadata={"source": "cellbench demo"})
            battery = database.battery(DEMO_BATTERY)

        def requests(ready: Station) -> list[TestRequest]:
            return [ready.request(ref, plan, battery, name=f"demo channel {ref.name}")
                    for ref in ready.channels]

        job = _Job(station, database, VirtualClock(), requests)
        outcomes = _run_job(job, config.station.sample_period, manager)
        if cycles is not None:
            compared = [o.test_id for o in outcomes[:_FADE_PLOT_TESTS]]
            try:
                draw_cycles([cycle_series(database, test_id) for test_id in compared],
                            fade_plot)
            except PlotError as err:
                fail(f"no fade plot: {err}", code=1)
            ids = " ".join(map(str, compared))
            console.print(f"draw it again or other tests: cellbench plot {ids} --cycles "
                          f"--db {db}", soft_wrap=True, highlight=False)
            console.print(f"fade plot of tests {ids}: [bold]{fade_plot}[/bold]",
                          soft_wrap=True, highlight=False)
    raise typer.Exit(_exit_code(job, outcomes))

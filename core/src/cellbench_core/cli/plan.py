"""``cellbench plan check``, ``plan show`` and ``plan import``: test plans, without running
them."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cellbench_core.cli.app import app, station_plugins
from cellbench_core.cli.console import console, fail, warn
from cellbench_core.cli.database import DbOption, StationOption, database_url, opened
from cellbench_core.estimate import Cell, Estimate, EstimateError, chemistry_of, estimate
from cellbench_core.plan import PlanError, dump_plan, load_plan
from cellbench_core.plan.advice import plan_warnings
from cellbench_core.plan.model import ChamberSpec, Plan
from cellbench_core.plan.program import Program
from cellbench_core.plan.pybamm import from_pybamm, pybamm_steps
from cellbench_core.plan.show import show_plan
from cellbench_core.plan.tables import TableLoader, lookup_tables
from cellbench_core.plan.unicycler import from_unicycler
from cellbench_core.plots import PlotError, draw_signals, signal_series
from cellbench_core.plugins import PluginManager, loaded_plugins
from cellbench_core.runner import ChannelRef, RunError, Runner
from cellbench_core.station import Station, StationConfig, StationError, load_station
from cellbench_core.storage import Database
from cellbench_core.units import Dimension, UnitError, parse_value
from cellbench_hal import DeviceError

plan_app = typer.Typer(help="Check, show and estimate test plans.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")


@plan_app.command("check")
def plan_check(
    plan: Annotated[Path, typer.Argument(help="Plan file (YAML).", show_default=False)],
    station: Annotated[Path | None, typer.Option(
        "--station", help="Station file (TOML): also check the plan against its channels' "
        "ranges and devices' signals (nothing is opened).", show_default=False)] = None,
    channels: Annotated[str | None, typer.Option(
        help="With --station: the channels to check against, e.g. 1-8 or 1,3 (default all).",
        show_default=False)] = None,
    battery: Annotated[str | None, typer.Option(
        help="A registered battery: also check against its limits and use its capacity.",
        show_default=False)] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="Database URL holding --battery (default: the station file's).",
        show_default=False)] = None,
    alongside: Annotated[list[str] | None, typer.Option(
        "--alongside", metavar="PLAN@CHANNELS",
        help="With --station: another plan started at the same time on CHANNELS, e.g. "
        "cold.yaml@5-8 (repeatable; PLAN then runs on the other channels unless --channels "
        "says). Checked like PLAN, and plans sharing a climate chamber must ask it for the same "
        "climates in the same order.", show_default=False)] = None,
) -> None:
    """Check a plan and print it normalised; on an error name file, line and field, exit 2.
    With --station (and --battery), also check every step against each channel's ranges and the
    battery's limits, and the signals the plan limits, ends on and writes against the channel's
    devices, as a test start would; with --alongside, also that the tests in one chamber would
    not ask it for different climates at once."""
    if station is None and (battery is not None or alongside):
        option = "--battery" if battery is not None else "--alongside"
        fail(f"plan check: {option} needs --station (the channels to check against)", code=2)
    config: StationConfig | None = None
    if station is not None:
        try:
            config = load_station(station)
        except StationError as err:
            fail(str(err), code=2)
    manager = loaded_plugins() if config is None else station_plugins(config)
    tables = lookup_tables(manager.registry)
    try:
        parsed = load_plan(plan, tables=tables)
        others = [(_alongside(text, tables), text) for text in alongside or ()]
    except PlanError as err:
        fail(str(err), code=2)
    if station is not None and config is not None:
        _check_against(parsed, station, config, manager, channels, battery, db, others)
    for warning in plan_warnings(parsed, battery=battery is not None):
        warn(warning)
    console.print(dump_plan(parsed), markup=False, highlight=False, end="")


def _alongside(text: str, tables: TableLoader) -> tuple[Plan, str]:
    """An ``--alongside`` value: its plan, and the channels it runs on."""
    path, at, channels = text.rpartition("@")
    if not at or not path or not channels.strip():
        fail(f"plan check: --alongside {text!r}: expected PLAN@CHANNELS, like cold.yaml@5-8",
             code=2)
    return load_plan(Path(path), tables=tables), channels


def _check_against(plan: Plan, station: Path, config: StationConfig, manager: PluginManager,
                   channels: str | None, battery: str | None, db: str | None,
                   others: list[tuple[tuple[Plan, str], str]]) -> None:
    """Resolve ``plan`` for each selected channel of the station ``config`` of file ``station``
    (constructed, not opened) and ``battery`` as the runner does before a test starts, and the
    plans ``others`` (with their channels, and the ``--alongside`` text naming them) on theirs;
    then check that the plans sharing a chamber agree on its climates. The first misfit ends
    with exit 2."""
    record = None
    if battery is not None:
        with opened(database_url(db, station)) as database:
            record = database.battery(battery)
        if record is None:
            fail(f"--battery: no battery named {battery!r}", code=2)
    try:
        built = Station(config, manager)
        refs: list[ChannelRef] = []
        for index, (name, driver) in enumerate(built.drivers):
            # A driver that learns its channels when opened has none (or raises) before: the
            # numbers of the channels after it would then be wrong, so the check stops there.
            try:
                count = len(driver.channels)
            except DeviceError:
                count = 0
            if not count:
                fail(f"{station}: channels[{index}] ({name}): its channel ranges are known only "
                     "once it is open; the check at test start covers it", code=2)
            refs += [ChannelRef(len(refs) + 1 + local, driver, name, local)
                     for local in range(count)]
        built.channels = refs
        built.attach()
        built.check_device_writes(opened=False)
        placed: list[tuple[Plan, list[ChannelRef]]] = []
        for (other, numbers), text in others:
            try:
                placed.append((other, built.select(numbers)))
            except StationError as err:
                fail(f"plan check: --alongside {text!r}: "
                     f"{str(err).removeprefix('--channels: ')}", code=2)
        taken = {ref.number: other for other, refs in placed for ref in refs}
        mine = built.select(channels)
        if channels is None:  # the channels the other plans leave
            mine = [ref for ref in mine if ref.number not in taken]
    except StationError as err:
        fail(str(err), code=2)
    for ref in mine:
        if ref.number in taken:
            fail(f"plan check: channel {ref.number} is given to {plan.source} and to "
                 f"{taken[ref.number].source} (--alongside)", code=2)
    placed.insert(0, (plan, mine))
    for each, refs in placed:
        capacity = record.nominal_capacity_ah if record else each.capacity_ah
        program = Program.compile(each)
        for ref in refs:
            request = built.request(ref, each, record)
            try:
                Runner.resolve_plan(request, program, capacity)
                Runner.resolve_signals(request, program)
            except RunError as err:
                fail(str(err), code=2)
    _check_chamber_climates(built, placed)


def _check_chamber_climates(station: Station, placed: list[tuple[Plan, list[ChannelRef]]]) -> None:
    """Fail when plans started together in one chamber would ask it for different climates at
    once: its channels meet at their chamber steps in order (the first with the first, ...), as
    far as the plans' leading chamber steps are known without running them."""
    met: dict[str, list[tuple[Plan, list[int], list[tuple[int, ChamberSpec]]]]] = {}
    for plan, refs in placed:
        steps = [(step.line, step.chamber) for step in
                 Program.compile(plan).leading_chamber_steps() if step.chamber is not None]
        for ref in refs:
            inside = station.chamber_of(ref.number)
            if inside is None or not steps:
                continue
            plans = met.setdefault(inside[0], [])
            if plans and plans[-1][0] is plan:
                plans[-1][1].append(ref.number)
            else:
                plans.append((plan, [ref.number], steps))
    for chamber, plans in met.items():
        first, first_channels, first_steps = plans[0]
        for plan, numbers, steps in plans[1:]:
            for n, ((line_a, a), (line_b, b)) in enumerate(zip(first_steps, steps, strict=False)):
                if a.climate != b.climate:
                    fail(f"plan check: chamber {chamber!r}: at their chamber step {n + 1} "
                         f"{first.source}:{line_a} (channels {_numbers(first_channels)}) asks "
                         f"for {a.describe_climate()} and {plan.source}:{line_b} (channels "
                         f"{_numbers(numbers)}) for {b.describe_climate()}: the channels in a "
                         "chamber meet at their chamber steps in order, and it holds one "
                         "climate at a time", code=2)


def _numbers(numbers: list[int]) -> str:
    return ",".join(str(n) for n in numbers)


class ImportFormat(StrEnum):
    """Procedure formats ``cellbench plan import`` reads."""

    PYBAMM = "pybamm"
    UNICYCLER = "unicycler"


@plan_app.command("import")
def plan_import(
    sources: Annotated[list[str], typer.Argument(
        help="PyBaMM experiment strings, or files holding them (a JSON list, or one per line); "
        "for unicycler, one aurora-unicycler protocol JSON file.",
        show_default=False)],
    from_format: Annotated[ImportFormat, typer.Option(
        "--from", help="The format to import.", case_sensitive=False)],
    name: Annotated[str | None, typer.Option(
        help="The plan's name (default: the protocol's sample name, or 'Imported experiment')."
    )] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the plan here instead of printing it.")] = None,
    capacity: Annotated[str | None, typer.Option(
        help="pybamm: the cell's capacity for the experiment's C-rates, e.g. '2.5 Ah' (or run "
             "the plan with --battery NAME).", show_default=False)] = None,
    limits: Annotated[list[str] | None, typer.Option(
        help="pybamm: safety limits as NAME=VALUE, comma-separated or repeated, e.g. "
             "'voltage_min=2.5 V,voltage_max=4.2 V,current_max=2C' (names: voltage_max, "
             "voltage_min, current_max, temperature_max, temperature_min).",
        show_default=False)] = None,
) -> None:
    """Convert another tool's procedure into a plan (YAML); on an error name the step (or the
    protocol's JSON path), exit 2.

    Example: cellbench plan import --from pybamm "Discharge at C/5 until 2.5 V"
    "Rest for 1 hour" --capacity "2.5 Ah" --limits "voltage_min=2.45 V,voltage_max=4.25 V"
    """
    if from_format is ImportFormat.UNICYCLER:
        if capacity is not None or limits:
            fail("plan import --from unicycler: --capacity and --limits are for pybamm; a "
                 "unicycler protocol carries its own", code=2)
        if len(sources) != 1:
            fail("plan import --from unicycler: give exactly one protocol JSON file", code=2)
        try:
            text = from_unicycler(Path(sources[0]).read_text(encoding="utf-8-sig"), name,
                                  sources[0])
        except (OSError, UnicodeDecodeError) as err:
            fail(f"{sources[0]}: {err}", code=2)
        except PlanError as err:
            fail(str(err), code=2)
        _write_plan(text, output)
        return
    steps: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_file():
            try:
                steps += pybamm_steps(path.read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError, ValueError) as err:
                fail(f"{source}: {err}", code=2)
        else:
            steps.append(source)
    try:
        text = from_pybamm(steps, name or "Imported experiment", capacity=capacity,
                           limits=_limits(limits or []))
    except PlanError as err:
        if err.field == "capacity" or err.field.startswith("limits"):
            option = "--capacity" if err.field == "capacity" else "--limits"
            fail(f"{option}: {err.field}: {err.message}", code=2)
        fail(str(err), code=2)
    _write_plan(text, output)


def _limits(items: list[str]) -> dict[str, str]:
    """``--limits`` values (``NAME=VALUE``, comma-separated or repeated) as a plan's limits."""
    limits: dict[str, str] = {}
    for item in (part for text in items for part in text.split(",")):
        key, sep, value = (x.strip() for x in item.partition("="))
        if not sep or not key or not value:
            fail(f"--limits: expected NAME=VALUE like voltage_min=2.5 V, not {item.strip()!r}",
                 code=2)
        if key in limits:
            fail(f"--limits: {key} is given twice", code=2)
        limits[key] = value
    return limits


def _write_plan(text: str, output: Path | None) -> None:
    """Print an imported plan, or write it to ``output``."""
    if output is None:
        console.print(text, markup=False, highlight=False, end="", soft_wrap=True)
    else:
        output.write_text(text, encoding="utf-8")


@plan_app.command("show")
def plan_show(
    plan: Annotated[Path, typer.Argument(help="Plan file (YAML).", show_default=False)],
) -> None:
    """Print a plan as readable, numbered step text; on an error name file, line and field,
    exit 2."""
    try:
        parsed = load_plan(plan, tables=lookup_tables(loaded_plugins().registry))
    except PlanError as err:
        fail(str(err), code=2)
    console.print(show_plan(parsed), markup=False, highlight=False, end="", soft_wrap=True)


#: A capacity table longer than this shows its first and last few cycles and every Nth between.
_CAPACITY_ROWS = 24
_CAPACITY_ENDS = 5


@plan_app.command("estimate")
def plan_estimate(
    plan: Annotated[Path, typer.Argument(help="Plan file (YAML).", show_default=False)],
    battery: Annotated[str | None, typer.Option(
        help="A registered battery: its capacity, chemistry, limits and (metadata r0_ohm) "
             "resistance.", show_default=False)] = None,
    capacity: Annotated[str | None, typer.Option(
        help="Without --battery: the cell's capacity, e.g. 2.5Ah (default: the plan's).",
        show_default=False)] = None,
    chemistry: Annotated[str | None, typer.Option(
        help="Without --battery: nmc or lfp (default nmc).", show_default=False)] = None,
    temperature: Annotated[str, typer.Option(
        help="Ambient temperature of the cell, e.g. 25°C.")] = "25 °C",
    period: Annotated[str, typer.Option(
        help="Sample period of the station that will run it, e.g. '1 s'.")] = "1 s",
    plot: Annotated[Path | None, typer.Option(
        help="Also draw the predicted voltage, current and temperature to this image.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the estimate as JSON (for schedulers).")] = False,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Estimate what PLAN will do on a cell before it runs: duration (total and per top-level
    step or loop), cycles, capacity per cycle with the cell's ageing, and every step that would
    end on its time limit or a safety limit instead of its own condition (warnings).

    The plan runs in the real runner on one simulated cell fitted to the battery (the sim
    plugin's sim-bulk channel, which computes whole steps in bulk), on a virtual clock.

    Example: cellbench plan estimate plans/cycle-life.yaml --capacity 2.5Ah --chemistry nmc
    """
    if battery is not None and (capacity is not None or chemistry is not None):
        option = "--capacity" if capacity is not None else "--chemistry"
        fail(f"plan estimate: {option} and --battery exclude each other (the battery gives "
             "its own)", code=2)
    manager = loaded_plugins()
    try:
        parsed = load_plan(plan, tables=lookup_tables(manager.registry))
    except PlanError as err:
        fail(str(err), code=2)
    ambient = _option_value("--temperature", temperature, Dimension.TEMPERATURE)
    period_s = _option_value("--period", period, Dimension.TIME)
    if not period_s > 0:
        fail(f"--period: a sample period must be positive, not {period!r}", code=2)
    record = None
    if battery is not None:
        with opened(database_url(db, station)) as database:
            record = database.battery(battery)
            known = ", ".join(b.name for b in database.batteries()) or "none registered"
        if record is None:
            fail(f"--battery: no battery called {battery!r} (known: {known})", code=2)
    try:
        if record is not None:
            cell = Cell.of_battery(record, ambient)
        else:
            cell = Cell(_capacity(capacity, parsed), _chemistry(chemistry), ambient)
        draw = None if plot is None else _drawer(plot)
        result = estimate(parsed, manager, cell, battery=record, period_s=period_s, then=draw,
                          trace=plot is not None)
    except EstimateError as err:
        fail(str(err), code=2)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
    else:
        _print_estimate(result, cell, period_s)
        if plot is not None:
            console.print(f"predicted curves: [bold]{plot}[/bold]", highlight=False)
    for warning in result.warnings:
        warn(warning)


def _option_value(option: str, text: str, dimension: Dimension) -> float:
    try:
        return parse_value(text, dimension, c_rate=False).si
    except UnitError as err:
        fail(f"{option}: {err}", code=2)


def _capacity(text: str | None, plan: Plan) -> float:
    if text is None:
        if plan.capacity_ah is None:
            fail(f"plan estimate: {plan.source} gives no capacity; give --capacity (e.g. 2.5Ah) "
                 "or --battery", code=2)
        return plan.capacity_ah
    value = _option_value("--capacity", text, Dimension.CHARGE)  # Ah
    if not value > 0:
        fail(f"--capacity: a capacity must be positive, not {text!r}", code=2)
    return value


def _chemistry(text: str | None) -> str:
    if text is None:
        return "nmc"
    named = chemistry_of(text)
    if named is None:
        fail(f"--chemistry: {text!r} is not a chemistry the simulated cell has (nmc, lfp)",
             code=2)
    return named


def _drawer(output: Path) -> Callable[[Database, int], None]:
    """Draw the estimated test's signals to ``output`` (a PlotError ends the command)."""
    def draw(database: Database, test_id: int) -> None:
        try:
            draw_signals([signal_series(database, test_id)], output)
        except PlotError as err:
            fail(f"--plot: {err}", code=1)
    return draw


def _duration_text(seconds: float) -> str:
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:,.1f} days ({seconds / 3600:,.1f} h)"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min"


def _print_estimate(result: Estimate, cell: Cell, period_s: float) -> None:
    resistance = "" if cell.r0_ohm is None else f", R0 {cell.r0_ohm * 1e3:g} mΩ"
    console.print(
        f"[bold]{result.plan}[/bold] on a simulated {cell.capacity_ah:g} Ah {cell.chemistry} cell"
        f"{resistance} at {cell.temperature_c:g} °C, sampled every {period_s:g} s", highlight=False)
    colour = "green" if result.status == "finished" else "yellow"
    console.print(f"duration: [bold]{_duration_text(result.duration_s)}[/bold]; "
                  f"{len(result.cycles)} cycles; {result.steps} steps; ends "
                  f"[{colour}]{result.status}: {result.reason}[/{colour}]", highlight=False)
    phases = Table(title="Phases (top-level steps and loops)", title_justify="left")
    for column, justify in (("line", "right"), ("phase", "left"), ("duration", "right"),
                            ("share", "right")):
        phases.add_column(column, justify=justify)  # type: ignore[arg-type]
    for phase in result.phases:
        share = phase.duration_s / result.duration_s if result.duration_s else 0.0
        phases.add_row(str(phase.line), phase.text, _duration_text(phase.duration_s),
                       f"{share:.0%}")
    console.print(phases)
    if not result.cycles:
        return
    first = result.cycles[0].discharge_ah
    shown = _summarised(len(result.cycles))
    title = "Capacity per cycle" + ("" if len(shown) == len(result.cycles) else
                                    f" (first and last {_CAPACITY_ENDS}, and one every "
                                    f"{shown[_CAPACITY_ENDS + 1] - shown[_CAPACITY_ENDS]} "
                                    "cycles between)")
    table = Table(title=title, title_justify="left")
    for column in ("cycle", "discharge [Ah]", "charge [Ah]", "of cycle 1", "duration"):
        table.add_column(column, justify="right")
    for n in shown:
        c = result.cycles[n]
        relative = f"{c.discharge_ah / first:.1%}" if first > 0 else "-"
        table.add_row(str(c.cycle), f"{c.discharge_ah:.4f}", f"{c.charge_ah:.4f}", relative,
                      _duration_text(c.duration_s))
    console.print(table)


def _summarised(count: int) -> list[int]:
    """The indices of a table of ``count`` rows to show: all of a short one; of a long one
    the first and last few and every Nth between."""
    if count <= _CAPACITY_ROWS:
        return list(range(count))
    every = max(1, -(-(count - 2 * _CAPACITY_ENDS) // (_CAPACITY_ROWS - 2 * _CAPACITY_ENDS)))
    middle = range(_CAPACITY_ENDS - 1 + every, count - _CAPACITY_ENDS, every)
    return [*range(_CAPACITY_ENDS), *middle, *range(count - _CAPACITY_ENDS, count)]

"""``cellbench queue add/list/cancel``: the test queue a running station (``cellbench serve``)
takes its tests from."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cellbench_core.cli.app import app, station_plugins
from cellbench_core.cli.console import console, fail, warn
from cellbench_core.cli.database import DbOption, StationOption, database_url, opened
from cellbench_core.estimate import Cell, EstimateError, estimate
from cellbench_core.plan import PlanError, load_plan, parse_plan
from cellbench_core.plan.tables import TableLoader, lookup_tables
from cellbench_core.plugins import PluginError, PluginManager, loaded_plugins
from cellbench_core.station import Station, StationError, load_station
from cellbench_core.storage import Database, StorageError
from cellbench_core.storage.queue import QueueEntry, QueueStatus, TestQueue

queue_app = typer.Typer(
    help="The test queue: a running station (cellbench serve) starts each queued test as soon "
         "as its channel is free.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")

_COLOURS = {"queued": "cyan", "running": "blue", "finished": "green", "stopped": "yellow",
            "cancelled": "dim"}


@queue_app.command("add")
def add_command(
    plan: Annotated[Path, typer.Argument(help="Plan file (YAML); its text is queued.",
                                         show_default=False)],
    channel: Annotated[int, typer.Option(min=1, help="Station channel number to run it on.",
                                         show_default=False)],
    battery: Annotated[str | None, typer.Option(
        help="Registered battery under test (see cellbench battery list).")] = None,
    name: Annotated[str | None, typer.Option(help="The test's name (default: the plan's).")
                    ] = None,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Queue PLAN for a channel; the station starts it as soon as the channel is free.

    The plan is checked first, and its text is stored: later edits of the file do not change
    the queued test.

    Example: cellbench queue add plans/capacity-check.yaml --channel 3 --battery NMC-18650-A
    --station station.toml
    """
    try:
        load_plan(plan, tables=lookup_tables(loaded_plugins().registry))
    except PlanError as err:
        fail(str(err), code=2)
    if station is not None:
        _check_channel(station, channel)
    text = plan.read_text(encoding="utf-8")
    with opened(database_url(db, station), create=True) as database:
        if battery is not None and database.battery(battery) is None:
            known = ", ".join(b.name for b in database.batteries()) or "none registered"
            fail(f"--battery: no battery called {battery!r} (known: {known})", code=2)
        try:
            entry = TestQueue(database).add(channel, text, plan_source=str(plan),
                                            battery=battery, name=name)
        except ValueError as err:
            fail(str(err), code=2)
    console.print(f"queued entry {entry}: {plan} on channel {channel}", highlight=False)


def _check_channel(station: Path, channel: int) -> None:
    """End the command (exit 2) when the station file shows that ``channel`` does not exist."""
    try:
        config = load_station(station)
        count = Station(config, station_plugins(config), base_dir=station.parent).channel_count()
    except (StationError, PluginError) as err:
        fail(str(err), code=2)
    if count is not None and channel > count:
        fail(f"--channel {channel}: {station} has channels 1-{count}; the station could never "
             "start this test", code=2)


@queue_app.command("list")
def list_command(
    all_entries: Annotated[bool, typer.Option(
        "--all", help="Also entries that have ended (default: queued and running only).")
                           ] = False,
    eta: Annotated[bool, typer.Option(
        "--eta", help="Also each queued and running test's estimated start and end on its "
        "channel (see cellbench plan estimate), in the channel's queue order.")] = False,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """List the queue: what waits, what runs (with its test id), and how entries ended."""
    statuses = None if all_entries else (QueueStatus.QUEUED, QueueStatus.RUNNING)
    with opened(database_url(db, station)) as database:
        entries = TestQueue(database).entries(statuses)
        times = _etas(database, entries, station) if eta else {}
    if not entries:
        console.print("The queue is empty." if all_entries
                      else "Nothing queued or running (--all shows ended entries).")
        return
    table = Table(title="Test queue", title_justify="left")
    columns = [("id", "right"), ("ch", "right"), ("test name / plan", "left"),
               ("battery", "left"), ("status", "left"), ("queued", "left"), ("test", "right"),
               ("error", "left")]
    if eta:
        columns[-1:-1] = [("est. start", "left"), ("est. end", "left")]
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for e in entries:
        colour = _COLOURS.get(e.status.value, "red")
        queued = datetime.fromtimestamp(e.created_unix_s).strftime("%Y-%m-%d %H:%M:%S")
        row = [str(e.id), str(e.channel), e.name or Path(e.plan_source or "-").name,
               e.battery or "-", f"[{colour}]{e.status.value}[/{colour}]", queued,
               "-" if e.test_id is None else str(e.test_id), e.error or ""]
        if eta:
            start, end = times.get(e.id, (None, None))
            row[-1:-1] = [_when(start), _when(end)]
        table.add_row(*row)
    console.print(table)


def _when(unix_s: float | None) -> str:
    return "-" if unix_s is None else datetime.fromtimestamp(unix_s).strftime("%Y-%m-%d %H:%M")


def _etas(database: Database, entries: list[QueueEntry], station: Path | None
          ) -> dict[int, tuple[float, float]]:
    """The estimated start and end (Unix s) of every queued and running entry: per channel,
    the running test from where it stands, then the queued ones one after the other in the
    order the station takes them. An entry whose plan cannot be estimated gets none, with a
    warning, and the entries after it on its channel none either."""
    period_s = 1.0
    if station is not None:
        try:
            period_s = load_station(station).station.sample_period
        except StationError as err:
            fail(str(err), code=2)
    manager = loaded_plugins()
    tables = lookup_tables(manager.registry)
    known: dict[tuple[str, str | None], float | None] = {}
    now = time.time()
    free_at: dict[int, float | None] = {}  # channel -> when it is free (None: not known)
    result: dict[int, tuple[float, float]] = {}
    running = [e for e in entries if e.status is QueueStatus.RUNNING]
    queued = [e for e in entries if e.status is QueueStatus.QUEUED]
    for e in running + queued:
        key = (e.plan, e.battery)
        if key not in known:
            known[key] = _duration(database, e, manager, tables, period_s)
        duration = known[key]
        start = free_at.get(e.channel, now)
        if e.status is QueueStatus.RUNNING and e.started_unix_s is not None:
            start = e.started_unix_s
        if duration is None or start is None:
            free_at[e.channel] = None
            continue
        end = max(start + duration, now)  # a test running longer than estimated ends later
        result[e.id] = (start, end)
        free_at[e.channel] = end
    return result


def _duration(database: Database, entry: QueueEntry, manager: PluginManager,
              tables: TableLoader, period_s: float) -> float | None:
    """How long the entry's test is estimated to take (s); None, with a warning, if its plan
    cannot be estimated."""
    where = f"queue entry {entry.id}"
    try:
        plan = parse_plan(entry.plan, entry.plan_source or where, tables=tables)
        record = None if entry.battery is None else database.battery(entry.battery)
        if record is not None:
            cell = Cell.of_battery(record)
        elif plan.capacity_ah is not None:
            cell = Cell(plan.capacity_ah)
        else:
            raise EstimateError("neither its battery nor its plan gives a capacity")
        return estimate(plan, manager, cell, battery=record, period_s=period_s).duration_s
    except (PlanError, EstimateError) as err:
        warn(f"{where}: no estimate: {err}")
        return None


@queue_app.command("cancel")
def cancel_command(
    entry: Annotated[int, typer.Argument(help="Queue entry id (see cellbench queue list).",
                                         show_default=False)],
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Withdraw a queued entry before its test starts."""
    with opened(database_url(db, station)) as database:
        try:
            TestQueue(database).cancel(entry)
        except StorageError as err:
            fail(str(err), code=2)
    console.print(f"cancelled queue entry {entry}")

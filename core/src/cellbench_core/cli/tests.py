"""``cellbench test list/show/delete``: the tests a station's database holds, and their
per-cycle results (the ``cycles`` view)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from cellbench_core.cli.app import app
from cellbench_core.cli.console import console, fail
from cellbench_core.cli.database import DbOption, StationOption, database_url, opened
from cellbench_core.events import TestStatus
from cellbench_core.storage import CycleRecord, StorageError, TestRecord
from cellbench_core.units import UnitError, parse_duration

test_app = typer.Typer(
    help="The tests a station's database holds: list them, show one with its per-cycle "
         "results, delete one.", no_args_is_help=True)
app.add_typer(test_app, name="test")

_COLOURS = {"running": "blue", "finished": "green", "stopped": "yellow", "failed": "red",
            "interrupted": "magenta"}


def _when(unix_s: float | None) -> str:
    if unix_s is None:
        return "-"
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M")


def _since(text: str) -> float:
    """``--since``: a date (2026-12-01, UTC) or how long ago (7 d, 12 h)."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        pass
    try:
        return time.time() - parse_duration(text)
    except UnitError:
        fail(f"--since: expected a date like 2026-12-01 or a time ago like '7 d', not "
             f"{text!r}", code=2)


@test_app.command("list")
def list_command(
    station_name: Annotated[str | None, typer.Option(
        "--station-name", help="Only the tests of this station (its name in the station file).",
        show_default=False)] = None,
    battery: Annotated[str | None, typer.Option(help="Only the tests on this battery.",
                                                show_default=False)] = None,
    status: Annotated[TestStatus | None, typer.Option(
        help="Only the tests with this status.", case_sensitive=False,
        show_default=False)] = None,
    since: Annotated[str | None, typer.Option(
        help="Only the tests started since a date (2026-12-01, UTC) or a time ago ('7 d').",
        show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """List tests, newest first, with where and on what they ran and how they ended.

    Example: cellbench test list --battery NMC-18650-A --status finished --since '30 d'
    """
    since_unix_s = None if since is None else _since(since)
    with opened(database_url(db, station)) as database:
        tests = database.tests(station=station_name, battery=battery, status=status,
                               since_unix_s=since_unix_s, newest_first=True, limit=limit)
    if not tests:
        console.print("No tests match.")
        return
    table = Table(title="Tests, newest first", title_justify="left")
    for column, justify in (("id", "right"), ("started (UTC)", "left"), ("channel", "left"),
                            ("battery", "left"), ("plan", "left"), ("status", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for t in tests:
        colour = _COLOURS.get(t.status.value, "")
        table.add_row(str(t.id), _when(t.start_unix_s), t.channel, t.battery or "-",
                      t.plan_name, f"[{colour}]{t.status.value}[/]" if colour else t.status.value)
    console.print(table)


@test_app.command("show")
def show_command(
    test_id: Annotated[int, typer.Argument(help="The test's id (see cellbench test list).",
                                           show_default=False)],
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Show one test: what ran, where, on which battery, how it ended, and its per-cycle
    results (charge and discharge capacity and energy, efficiencies, mean voltages)."""
    with opened(database_url(db, station)) as database:
        test = database.test(test_id)
        if test is None:
            fail(f"no test {test_id} in this database", code=2)
        cycles = database.cycles(test_id)
    console.print(_details(test))
    if not cycles:
        console.print("No finished step yet.")
        return
    console.print(cycle_table(cycles, title=f"Cycles of test {test_id}"))


def _details(t: TestRecord) -> Table:
    table = Table(title=f"Test {t.id}: {t.name}", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    end = t.end_unix_s if t.end_unix_s is not None else time.time()
    rows = [("station", t.station), ("channel", t.channel), ("battery", t.battery or "-"),
            ("plan", f"{t.plan_name} ({t.plan_source})"), ("status", t.status.value),
            ("ended by", t.end_reason or "-"), ("started", _when(t.start_unix_s) + " UTC"),
            ("ended", _when(t.end_unix_s) + (" UTC" if t.end_unix_s is not None else "")),
            ("duration", _duration(end - t.start_unix_s)),
            ("sample period", f"{t.sample_period_s:g} s")]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _number(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def cycle_table(cycles: list[CycleRecord], title: str) -> Table:
    """The per-cycle results as a table that fits 80 columns."""
    table = Table(title=title, title_justify="left")
    for column in ("cycle", "charge Ah", "disch. Ah", "CE %", "EE %", "V ch", "V dis",
                   "duration", "T °C"):
        table.add_column(column, justify="right")
    for c in cycles:
        low, high = c.temperature_min_c, c.temperature_max_c
        temperature = "-" if math.isnan(low) else f"{low:.0f}-{high:.0f}"
        table.add_row(str(c.cycle), _number(c.charge_ah, 3), _number(c.discharge_ah, 3),
                      _percent(c.coulombic_efficiency), _percent(c.energy_efficiency),
                      _number(c.mean_charge_v, 3), _number(c.mean_discharge_v, 3),
                      _duration(c.duration_s), temperature)
    return table


@test_app.command("delete")
def delete_command(
    test_id: Annotated[int, typer.Argument(help="The test's id.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Delete a test and every row of it (samples, steps, events) from this database, in one
    transaction. A running test is refused. Copies already synced elsewhere stay there."""
    with opened(database_url(db, station)) as database:
        test = database.test(test_id)
        if test is None:
            fail(f"no test {test_id} in this database", code=2)
        if test.status is TestStatus.RUNNING:
            fail(f"test {test_id} is running on {test.channel}; stop it first", code=2)
        if not yes and not typer.confirm(
                f"Delete test {test_id} ({test.name}, {test.status.value}, started "
                f"{_when(test.start_unix_s)} UTC) and all its data?"):
            fail("nothing deleted", code=1)
        try:
            database.delete_test(test_id)
        except StorageError as err:
            fail(str(err), code=2)
    console.print(f"deleted test {test_id}")

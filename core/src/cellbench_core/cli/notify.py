"""``cellbench notify test``: a test message through every notifier of a station, now."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cellbench_core.cli.app import app, station_plugins
from cellbench_core.cli.console import console, fail
from cellbench_core.cli.database import DbOption, opened
from cellbench_core.station import Station, StationError, load_station
from cellbench_core.storage import Database

notify_app = typer.Typer(help="Notifiers: check that every notifier of a station reaches its "
                              "peer.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def test_command(
    station: Annotated[Path, typer.Option(
        "--station", help="The station file whose [[notifiers]] to test.", show_default=False)],
    db: DbOption = None,
) -> None:
    """Send a test message through every notifier of a station (mail to every recipient, an
    MQTT event, a webhook POST), past their outboxes, and print each one's result.

    A notifier that reaches its peer also delivers at once what waited in its outbox in the
    station database. Exit 1 if any failed.

    Example: **cellbench notify test --station station.toml**
    """
    try:
        config = load_station(station)
        built = Station(config, station_plugins(config), station.parent)
    except StationError as err:
        fail(str(err), code=2)
    if not built.notifiers:
        console.print(f"{station} has no [[notifiers]].", markup=False)
        return
    # Its outbox is written (what was waiting goes out too): the station's database, as serve
    # makes it.
    with opened(db or config.station.database, create=True) as database:
        try:
            results = asyncio.run(_test_all(built, database))
        except StationError as err:
            fail(str(err), code=2)
    table = Table(title=f"Notifiers of {config.station.name}", title_justify="left")
    for column in ("notifier", "kind", "result", "waiting"):
        table.add_column(column, justify="right" if column == "waiting" else "left")
    failed = False
    for (name, _), section, (ok, result, waiting) in zip(built.notifiers, config.notifiers,
                                                         results, strict=True):
        failed |= not ok
        shown = f"[green]{escape(result)}[/green]" if ok else f"[red]{escape(result)}[/red]"
        table.add_row(escape(name), escape(section.kind), shown, waiting)
    console.print(table)
    if failed:
        raise typer.Exit(1)


async def _test_all(station: Station, database: Database) -> list[tuple[bool, str, str]]:
    """Per notifier: whether the test message went, where to or why not, and how many messages
    wait in its outbox."""
    await station.start_notifiers(database)
    results = []
    try:
        for _, notifier in station.notifiers:
            results.append(await asyncio.to_thread(_test_one, notifier))
    finally:
        await station.close()
    return results


def _test_one(notifier: Any) -> tuple[bool, str, str]:
    send_test = getattr(notifier, "send_test", None)
    if send_test is None:
        return True, "cannot send a test message (no send_test); it receives events", ""
    try:
        destinations = send_test()
    except Exception as err:
        waiting = notifier.waiting()
        return False, f"failed: {err}", str(waiting)
    waiting = notifier.waiting()
    if waiting:
        notifier.retry_now()  # its peer answers: what waited goes now (or at close)
    where = ", ".join(d for d in destinations if d) or "sent"
    return True, f"sent: {where}" if where != "sent" else "sent", str(waiting)

"""``cellbench sync``: run a sync target (central SQL server, backup file...) beside a station."""

from __future__ import annotations

import logging
import signal
import threading
import tomllib
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from cellbench_core.cli.app import app
from cellbench_core.cli.console import console, fail
from cellbench_core.cli.database import DbOption, StationOption, database_url, opened
from cellbench_core.descriptors import Kind
from cellbench_core.dispatch import EventDispatcher
from cellbench_core.events import Alarm
from cellbench_core.plugins import PluginError, loaded_plugins
from cellbench_core.station import StationError, load_station
from cellbench_core.synctargets import SyncReport, refused_rows, run_sync


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a settings dict; a value is read as a TOML value (``500``,
    ``true``, ``"text"``) where it is one, else taken as text. ValueError names a bad pair."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--setting {pair!r}: expected KEY=VALUE")
        try:
            value: Any = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        settings[key.strip()] = value
    return settings


@app.command("sync")
def sync_command(
    target: Annotated[str, typer.Option(
        "--target", help="The sync target (see `cellbench plugins`): central-sql, "
                         "sqlite-backup, ...", show_default=False)],
    setting: Annotated[list[str] | None, typer.Option(
        "--setting", "-s", show_default=False,
        help="A target setting as KEY=VALUE (repeatable), e.g. "
             "-s url=postgresql+psycopg://central/lab")] = None,
    db: DbOption = None,
    station: StationOption = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Sync until the target holds everything committed, then exit.")] = False,
    interval: Annotated[float, typer.Option(
        help="Seconds between batches once caught up.")] = 0.5,
    alarm_after: Annotated[float, typer.Option(
        help="Record an alarm event when the target has not caught up for this many seconds."
    )] = 300.0,
) -> None:
    """Copy the station database to a sync target continuously, beside a running station.

    A separate process that reads the station database (and writes to it only its alarm
    events): it never holds up the station and survives it crashing (and the other way round).
    Stop it with Ctrl-C or SIGTERM; it resumes from what the target holds. A setting named
    `station` defaults to the station file's name.
    """
    try:
        settings = parse_settings(setting or [])
    except ValueError as err:
        fail(str(err), code=2)
    url = database_url(db, station)
    manager = loaded_plugins()
    try:
        descriptor = manager.registry.get(Kind.SYNC_TARGET, target)
    except PluginError as err:
        fail(f"--target: {err}", code=2)
    if station is not None and "station" in descriptor.settings.model_fields:
        try:
            settings.setdefault("station", load_station(station).station.name)
        except StationError as err:
            fail(str(err), code=2)
    try:
        built = descriptor.create(settings)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(settings)'}: {e['msg']}"
                             for e in err.errors())
        fail(f"--setting: bad settings for sync target {target!r}: {problems}", code=2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    moved = [0]

    def count(result: SyncReport) -> None:
        moved[0] += result.rows

    events = EventDispatcher(manager.hook)

    def alarm(message: str) -> None:
        events.fire("cellbench_alarm", Alarm(channel=None, test_id=None, message=message))

    with opened(url) as local:
        try:
            run_sync(built, local, name=target, interval_s=interval, alarm_after_s=alarm_after,
                     once=once, stop=stop, on_report=count, on_alarm=alarm)
        except ValueError as err:
            fail(str(err), code=2)
        except Exception as err:  # with --once: the target failed; say which and why
            fail(f"sync target {target}: {err}")
        finally:
            events.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    console.print(f"sync target {target}: {moved[0]} rows copied")



@app.command("sync-refused")
def sync_refused_command(
    target: Annotated[str | None, typer.Option(
        "--target", help="Only the rows this target refused (its name in the alarm: "
                         "`central-sql` run by `cellbench sync`, `central-sql (sync[0])` run "
                         "by a station).", show_default=False)] = None,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """List the rows sync targets refused (a value the destination cannot hold, a constraint
    it breaks) and went on without, oldest first, with the destination's reason.

    Each is recorded once as a `sync_refused` event of the station database. Fix the row in
    the station database (or the destination's rule) and it goes with the row's next change.
    """
    with opened(database_url(db, station)) as local:
        records = refused_rows(local, target)
    if not records:
        console.print("No row was refused.")
        return
    table = Table(title="Rows sync targets refused", title_justify="left")
    for column in ("recorded (UTC)", "target", "table", "key", "test", "reason"):
        table.add_column(column, overflow="fold")
    for record in records:
        row = record.row
        when = datetime.fromtimestamp(record.unix_time_s, UTC).strftime("%Y-%m-%d %H:%M:%S")
        # Reasons quote the destination, keys the station: shown as written, never as markup.
        table.add_row(when, Text(record.target), row.table, row.key,
                      "-" if row.test_id is None else str(row.test_id), Text(row.reason))
    console.print(table)

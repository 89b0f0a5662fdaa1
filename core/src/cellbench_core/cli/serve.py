"""``cellbench serve``: run a station from its test queue until stopped; and
``cellbench station init``: write an example station file that runs as it is."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer

from cellbench_core.addresses import is_loopback, join_address, split_address
from cellbench_core.cli.app import app, station_plugins
from cellbench_core.cli.console import EXIT_STORAGE_FAILED, console, fail
from cellbench_core.cli.database import DbOption, opened
from cellbench_core.descriptors import Kind
from cellbench_core.plugins import PluginError, loaded_plugins
from cellbench_core.service import StationService
from cellbench_core.service.sync_workers import SyncWorkers
from cellbench_core.station import Station, StationError, load_station
from cellbench_core.storage import StorageFailure
from cellbench_core.storage.lease import LeaseHeld, StationLease
from cellbench_hal import DeviceError

station_app = typer.Typer(help="Station files: write an example to start from.",
                          no_args_is_help=True)
app.add_typer(station_app, name="station")

_TEMPLATE = """\
# cellbench station file: one control PC's channels, database and settings.
# Every key is described in docs/station.md. Run it with: cellbench serve --station {file}

[station]
name = "{name}"                      # stored with every test
# SQLite by default; or mysql+pymysql://user:password@host/db, postgresql+psycopg://user@host/db
database = "{database}"
sample_period = "1 s"                # every channel is measured and checked this often
device_timeout = "5 s"               # a device call slower than this is a device failure
clock = "{clock}"                      # "real", or "virtual" for simulated channels only
{speed}queue_poll_interval = "0.5 s"         # how often `serve` reads the test queue
on_restart = "end"                   # after a crash: "resume" the interrupted tests, or "end" them

[plugins]
enable = ["{driver}"]                  # must load, or the station refuses to start
disable = []                         # left out by this station

[[channels]]                         # a group of channels behind one channel driver
driver = "{driver}"                    # a channel driver from `cellbench plugins`
[channels.settings]                  # validated by the driver; see its documentation
{settings}"""

_INTERFACE = """
[[interfaces]]                       # a control interface `cellbench serve` runs
kind = "{kind}"{kind_comment}
[interfaces.settings]
{key} = "{address}"{address_comment}
{tokens}"""

#: What `station init --rci` and `--web` write: the interface's kind, what it is, the setting
#: naming its address.
_INTERFACES = {"rci": ("remote control by `cellbench rci` (docs/rci.md)", "tcp"),
               "web": ("web pages and HTTP API (docs/web.md)", "listen")}

_COMMENT_COLUMN = 38

_SIM_SETTINGS = """\
count = {channels}                            # number of channels
chemistry = "nmc"                    # "nmc" (2.5-4.2 V) or "lfp" (2.5-3.65 V)
capacity_ah = 2.5                    # nominal capacity of the simulated cells
seed = 1                             # the same seed gives the same cells
"""


def _address(option: str, text: str) -> tuple[str, bool]:
    """``--rci`` or ``--web`` ``[HOST:]PORT`` as ``host:port`` (loopback without a host), and
    whether it is reachable only from this machine."""
    try:
        host, port = split_address(text if ":" in text else f"127.0.0.1:{text}")
    except ValueError:
        port = 0
    if port == 0:
        fail(f"{option}: expected [HOST:]PORT like 5025, 0.0.0.0:5025 or [::1]:5025, not "
             f"{text!r}", code=2)
    return join_address(host, port), is_loopback(host)


def _align_comments(text: str) -> str:
    """Line up the comments after keys in one column."""
    lines = []
    for line in text.splitlines():
        code, sep, comment = line.partition("  #")
        if sep and code.strip():
            line = f"{code.rstrip():<{_COMMENT_COLUMN - 1}} #{comment}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@station_app.command("init")
def init_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="The station file to write.")
                      ] = Path("station.toml"),
    channels: Annotated[int, typer.Option(min=1, max=100_000,
                                          help="Number of channels (sim driver).")] = 8,
    driver: Annotated[str, typer.Option(help="Channel driver, from `cellbench plugins`.")
                      ] = "sim",
    db: Annotated[str, typer.Option("--db", help="Database URL of the station.")
                  ] = "sqlite:///cellbench.db",
    name: Annotated[str, typer.Option(help="The station's name.")] = "station",
    rci: Annotated[str | None, typer.Option(
        metavar="[HOST:]PORT",
        help="Also serve the rci remote-control interface on this TCP port (of 127.0.0.1 "
             "without HOST). Beyond loopback clients need a token: one is written to "
             "FILE-rci-tokens.txt beside the station file.", show_default=False)] = None,
    web: Annotated[str | None, typer.Option(
        metavar="[HOST:]PORT",
        help="Also serve the web pages and HTTP API on this TCP port (of 127.0.0.1 without "
             "HOST). Beyond loopback people need a token: one is written to "
             "FILE-web-tokens.txt beside the station file.", show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Write a commented example station file that runs as it is.

    With the simulated driver (the default) the station runs on a virtual clock ten times
    faster than the wall; edit clock and speed for real time.

    Example: cellbench station init --channels 16 --db sqlite:///lab.db --rci 5025 --web 8080
    -o lab.toml
    """
    registry = loaded_plugins().registry
    known = [d.name for d in registry.all(Kind.CHANNEL_DRIVER)]
    if driver not in known:
        fail(f"--driver: no channel driver {driver!r} (installed: "
             f"{', '.join(known) or 'none'})", code=2)
    interfaces, token_files, served = "", [], []
    installed = {d.name for d in registry.all(Kind.INTERFACE)}
    for kind, wanted in (("rci", rci), ("web", web)):
        if wanted is None:
            continue
        if kind not in installed:
            fail(f"--{kind}: the {kind} interface plugin (cellbench-{kind}) is not installed",
                 code=2)
        address, local = _address(f"--{kind}", wanted)
        token_file = None if local else output.with_name(f"{output.stem}-{kind}-tokens.txt")
        what, key = _INTERFACES[kind]
        interfaces += _INTERFACE.format(
            kind=kind, kind_comment=f"  # {what}", key=key, address=address,
            address_comment="  # loopback: every local client may control the station"
            if local else "  # beyond this machine: clients give a token",
            tokens="" if token_file is None else
            f'token_file = "{token_file.name}"  # "<token> operator|viewer <label>" lines\n')
        served.append(f"{kind} on {address}")
        if token_file is not None:
            token_files.append((kind, token_file))
    for path in (output, *(file for _, file in token_files)):
        if path is not None and path.exists() and not force:
            fail(f"{path} exists; choose another -o FILE or give --force", code=2)
    simulated = driver == "sim"
    text = _TEMPLATE.format(
        file=output.name, name=name, database=db, driver=driver,
        clock="virtual" if simulated else "real",
        speed='speed = 10                           # virtual clock: times faster than the wall\n'
              if simulated else "",
        settings=_SIM_SETTINGS.format(channels=channels) if simulated else
        "# the driver's settings go here\n") + interfaces
    output.write_text(_align_comments(text), encoding="utf-8")
    for _, token_file in token_files:
        token_file.touch(mode=0o600)
        token_file.chmod(0o600)  # before the token is in it: only its owner may read it
        token_file.write_text(  # the label, not the token, is what events and logs show
            f"{secrets.token_urlsafe(24)} operator operator-1\n", encoding="utf-8")
    try:
        load_station(output)
    except StationError as err:  # the template and the station model went apart
        fail(f"the written file does not validate: {err}")
    console.print(f"wrote {output}: {channels if simulated else 'the'} {driver} channels, "
                  f"database {db}" + "".join(f", {text}" for text in served), highlight=False)
    for kind, token_file in token_files:
        console.print(f"wrote {token_file}: an operator token for {kind} clients"
                      + (" (cellbench rci --token, or CELLBENCH_RCI_TOKEN)" if kind == "rci"
                         else " (the page's login, or an Authorization: Bearer header)"),
                      highlight=False)


@app.command("serve")
def serve_command(
    station: Annotated[Path, typer.Option("--station", help="Station file (TOML); "
                                          "`cellbench station init` writes one.",
                                          show_default=False)],
    db: DbOption = None,
) -> None:
    """Run a station until stopped: open its channels, then start every test of the test
    queue as soon as its channel is free.

    Queue tests with `cellbench queue add` or by inserting rows into the database's test_queue
    table. SIGTERM or Ctrl-C stops every running test (output off), commits all data and exits
    0. Tests a crashed station left running are ended as interrupted when it starts again.
    The [[sync]] targets of the station file copy its data continuously meanwhile.

    Example: cellbench serve --station station.toml
    """
    try:
        config = load_station(station)
    except StationError as err:
        fail(str(err), code=2)
    manager = station_plugins(config)
    try:
        built = Station(config, manager, base_dir=station.parent)
        syncs = SyncWorkers(config, manager, manager.hook)
    except (StationError, PluginError) as err:
        fail(str(err), code=2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with opened(db or config.station.database, create=True,
                busy_timeout_s=min(30.0, config.station.storage_retry)) as database:
        async def main() -> None:
            service = StationService(built, database, config.station.make_clock(),
                                     manager.hook, version=version("cellbench-core"))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, service.shutdown)
            await service.serve()

        lease = StationLease(database, config.station.name)
        try:  # before any device or sync target is touched
            lease.acquire()
        except LeaseHeld as err:
            fail(str(err), code=2)
        except StorageFailure as err:
            fail(str(err), code=EXIT_STORAGE_FAILED)
        syncs.start(database)
        try:
            asyncio.run(main())
        except (DeviceError, StationError) as err:
            fail(str(err))
        except StorageFailure as err:
            fail(str(err), code=EXIT_STORAGE_FAILED)
        finally:
            syncs.stop(database)
            lease.release()
    logging.getLogger(__name__).info("station %r stopped", config.station.name)

"""``cellbench chamber status``: every climate chamber of a station, read now; and
``cellbench chamber emulate``: an emulator of a chamber a plugin drives, to try it without one."""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cellbench_core.cli.app import app, station_plugins
from cellbench_core.cli.console import console, error_console, fail
from cellbench_core.descriptors import Kind
from cellbench_core.plugins import PluginError, loaded_plugins
from cellbench_core.station import Station, StationError, load_station
from cellbench_hal import ChamberState, ClimateChamber, DeviceError, RealClock

chamber_app = typer.Typer(
    help="Climate chambers: read every chamber of a station, or run an emulator of one.",
    no_args_is_help=True,
)
app.add_typer(chamber_app, name="chamber")


@chamber_app.command("status")
def status_command(
    station: Annotated[Path, typer.Option(
        "--station", help="The station file whose [[chambers]] to read.", show_default=False)],
) -> None:
    """Read every chamber of a station once and print its state: running or not, temperature
    and humidity against their setpoints, the channels inside.

    A chamber that cannot be reached is shown with the reason, and the command exits with 1.

    Example: **cellbench chamber status --station station.toml**
    """
    try:
        config = load_station(station)
        built = Station(config, station_plugins(config), station.parent)
    except StationError as err:
        fail(str(err), code=2)
    if not built.chambers:
        console.print(f"{station} has no [[chambers]].", markup=False)
        return
    timeout_s = config.station.device_timeout
    results = asyncio.run(_read_all([chamber for _, chamber in built.chambers], timeout_s))
    table = Table(title=f"Chambers of {config.station.name}", title_justify="left")
    for column in ("chamber", "kind", "channels", "state", "°C", "set °C", "%RH", "set %RH"):
        table.add_column(column, justify="right" if "°C" in column or "RH" in column else "left")
    failed = False
    for (section, _), result in zip(built.chambers, results, strict=True):
        first = [section.name, section.kind, section.channels]
        if isinstance(result, ChamberState):
            state = "[green]running[/green]" if result.running else "stopped"
            table.add_row(*first, state, _number(result.temperature_c),
                          _number(result.setpoint_c), _number(result.humidity_pct),
                          _number(result.setpoint_humidity_pct))
        else:
            failed = True
            table.add_row(*first, f"[red]{result}[/red]", "-", "-", "-", "-")
    console.print(table)
    if failed:
        raise typer.Exit(1)


@chamber_app.command("emulate")
def emulate_command(
    kind: Annotated[str, typer.Option(
        "--kind", help="The chamber kind, as in [[chambers]] kind = ... (see cellbench plugins).",
        show_default=False)],
    port: Annotated[int, typer.Option(
        "--port", min=1, max=65535, help="The TCP port to listen on.", show_default=False)],
    host: Annotated[str, typer.Option(
        "--host", help="The address to listen on.")] = "127.0.0.1",
    speed: Annotated[float, typer.Option(
        "--speed", min=0.001, help="How much faster than the wall clock the emulated chamber's "
                                   "temperature moves.")] = 1.0,
) -> None:
    """Run an emulator of a chamber on a socket until Ctrl-C, so a station (or you, with its
    protocol) can talk to it without the hardware.

    Example: **cellbench chamber emulate --kind binder --port 10001**, then point a station's
    [[chambers]] section at 127.0.0.1:10001.
    """
    try:
        descriptor = loaded_plugins().registry.get(Kind.CLIMATE_CHAMBER, kind)
    except PluginError as err:
        fail(f"--kind: {err}", code=2)
    if not descriptor.emulator:
        fail(f"--kind: the {kind} chamber (plugin {descriptor.plugin}) ships no emulator", code=2)
    serve = descriptor.load_emulator()
    error_console.print(f"Emulating a {kind} chamber on {host}:{port} at {speed:g}x; "
                        f"Ctrl-C stops it.")
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve(host, port, speed=speed))
        except OSError as err:
            fail(f"--port: cannot listen on {host}:{port}: {err.strerror or err}")


async def _read_all(chambers: list[ClimateChamber],
                    timeout_s: float) -> list[ChamberState | str]:
    """Each chamber opened, read and closed, all at once; a failure becomes its reason."""
    clock = RealClock()

    async def read(chamber: ClimateChamber) -> ChamberState | str:
        try:
            async with asyncio.timeout(timeout_s):
                await chamber.open(clock)
                return await chamber.read()
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except DeviceError as err:
            return str(err)
        finally:
            with contextlib.suppress(DeviceError, TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await chamber.close()

    return list(await asyncio.gather(*(read(chamber) for chamber in chambers)))


def _number(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f}"

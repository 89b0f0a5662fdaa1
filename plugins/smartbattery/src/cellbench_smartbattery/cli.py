"""``cellbench smartbattery read``: open a smart battery once and print what it says about itself
and every signal, for bringing a bus up (or trying the plugin on its register model)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich import box
from rich.markup import escape
from rich.table import Table

from cellbench_sdk import DeviceError, RealClock
from cellbench_sdk.cli import console, fail
from cellbench_smartbattery.settings import SmartBatterySettings


def _address(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number such as 0x0B") from None


def register(app: typer.Typer) -> None:
    """Add ``cellbench smartbattery`` with its ``read`` command to ``app``."""
    battery_app = typer.Typer(help="Smart batteries (SBS 1.1) over SMBus.",
                              no_args_is_help=True)

    @battery_app.command()
    def read(
        bus: Annotated[str, typer.Option(help="smbus2, cp2112 or emulated")] = "smbus2",
        i2c_bus: Annotated[str, typer.Option(help="smbus2: N of /dev/i2c-N, or its path")] = "1",
        cp2112_serial: Annotated[str | None, typer.Option(
            help="cp2112: the bridge's USB serial number")] = None,
        address: Annotated[str, typer.Option(help="7-bit SMBus address")] = "0x0B",
        pec: Annotated[bool, typer.Option(help="check the packet error code")] = True,
    ) -> None:
        """Read a smart battery once: its identity, then every signal with its unit.

        Example: cellbench smartbattery read --bus cp2112 (or --bus emulated to see the
        plugin's register model).
        """
        settings: dict[str, Any] = {"bus": bus, "address": _address(address), "pec": pec,
                                    "i2c_bus": int(i2c_bus) if i2c_bus.isdigit() else i2c_bus}
        if cp2112_serial is not None:
            settings["cp2112_serial"] = cp2112_serial
        try:
            validated = SmartBatterySettings.model_validate(settings)
        except ValidationError as err:
            problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: "
                                 f"{e['msg']}" for e in err.errors())
            fail(problems, code=2)
        try:
            info, rows = asyncio.run(_read_once(validated))
        except DeviceError as err:
            fail(str(err))
        table = Table(show_header=False, box=None)
        for key, value in info.items():
            table.add_row(f"[bold]{escape(key)}[/bold]", escape(value))
        console.print(table)
        signals = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column, justify in (("signal", "left"), ("value", "right"), ("unit", "left")):
            signals.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in rows:
            signals.add_row(*(escape(cell) for cell in row))
        console.print(signals)

    app.add_typer(battery_app, name="smartbattery")


async def _read_once(settings: SmartBatterySettings
                     ) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    from cellbench_smartbattery.battery import SmartBattery

    battery = SmartBattery(settings)
    await battery.open(RealClock())
    try:
        readings = await battery.read()
        units = {signal.name: signal.unit for signal in battery.signals}
        return dict(battery.info), [(name, f"{reading.value:g}", units[name])
                                    for name, reading in readings.items()]
    finally:
        await battery.close()

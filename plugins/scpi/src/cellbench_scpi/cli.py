"""``cellbench scpi``: ``emulate`` an instrument with a cell behind it, ``identify`` one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from cellbench_sdk.cli import console, fail

if TYPE_CHECKING:
    from cellbench_scpi.emulator import Emulator

_MODELS = ("smu", "bidirectional", "supply", "load", "pair")


def register(app: typer.Typer) -> None:
    """Add ``cellbench scpi`` with ``emulate`` and ``identify`` to ``app``."""
    scpi = typer.Typer(help="SCPI instruments as channels: SMUs, bidirectional supplies, "
                            "supply + load pairs.", no_args_is_help=True)

    @scpi.command()
    def emulate(
        model: Annotated[str, typer.Option(help="smu, bidirectional, supply, load, or pair "
                                                "(a supply on PORT and a load on PORT+1 "
                                                "sharing one cell)")] = "smu",
        port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on")] = 5025,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        family: Annotated[str | None, typer.Option(
            help="command set to speak (keithley-2400, keithley-2450, keysight-b2900, ea-psb, "
                 "scpi-supply, tdk-genesys, scpi-load); default: the model's usual")] = None,
        cell: Annotated[str, typer.Option(help="chemistry of the cell: nmc or lfp")] = "nmc",
        capacity: Annotated[str, typer.Option(help="capacity of the cell, e.g. 2.5Ah")] = "2.5Ah",
        soc: Annotated[float, typer.Option(min=0.0, max=1.0, help="initial state of charge")
                       ] = 0.5,
        speed: Annotated[float, typer.Option(
            min=0.001, help="how much faster than the wall clock the cell runs; a station "
                            "must then run on a virtual clock of this speed, with "
                            "paced_speed set (emulators only)")] = 1.0,
        serial: Annotated[bool, typer.Option(
            help="serve on a pseudo-terminal (a serial port) instead of TCP")] = False,
    ) -> None:
        """Serve an emulated SCPI instrument with a simulated cell on its terminals, until
        Ctrl-C. A station reaches it with resource = "TCPIP::HOST::PORT::SOCKET"."""
        from cellbench_scpi.emulator import Emulator
        from cellbench_sdk.cell import CellParameters
        from cellbench_sdk.units import Dimension, UnitError, parse_quantity

        if model not in _MODELS:
            fail(f"--model: {model!r} is not one of {', '.join(_MODELS)}", code=2)
        try:
            amp_hours = parse_quantity(capacity, [Dimension.CHARGE])[1].si
            params = CellParameters.model_validate({
                "chemistry": cell, "capacity_ah": amp_hours, "initial_soc": soc,
                "capacity_spread": 0.0, "resistance_spread": 0.0})
            emulator = Emulator.create(model, family=family, speed=speed, params=params)
        except (UnitError, ValueError) as err:
            fail(f"cannot emulate: {err}", code=2)

        async def run() -> None:
            if serial:
                await emulator.start_pty()
            else:
                await emulator.start(host, [port + k for k in range(len(emulator.instruments))])
            _ready(emulator, speed)
            try:
                await asyncio.Event().wait()
            finally:
                await emulator.close()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())

    @scpi.command()
    def identify(
        resource: Annotated[str, typer.Argument(help="VISA resource, e.g. "
                                                     "TCPIP::10.0.0.5::5025::SOCKET")],
        timeout: Annotated[float, typer.Option(min=0.01, help="seconds a reply may take")
                           ] = 2.0,
        baud_rate: Annotated[int, typer.Option(min=1, help="serial resources only")] = 9600,
    ) -> None:
        """Ask an instrument *IDN?, name the driver and command set that fit it, and print its
        ranges. Changes nothing on the instrument."""
        from cellbench_scpi.identify import describe

        try:
            lines = describe(resource, timeout, baud_rate)
        except ValueError as err:
            fail(str(err), code=2)
        except Exception as err:  # a device error: say what happened
            fail(str(err))
        for line in lines:
            console.print(line, highlight=False, markup=False, soft_wrap=True)

    app.add_typer(scpi, name="scpi")


def _ready(emulator: Emulator, speed: float) -> None:
    for instrument, k in zip(emulator.instruments, range(len(emulator.instruments)),
                             strict=True):
        console.print(f"{instrument.cs.description} ({instrument.cs.name}) on "
                      f"{emulator.resource(k)}", highlight=False, markup=False)
    console.print(f"cell at {speed:g}x the wall clock; Ctrl-C stops it", highlight=False)

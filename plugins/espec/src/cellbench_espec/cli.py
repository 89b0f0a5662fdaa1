"""``cellbench espec emulate``: an emulated ESPEC controller for trying the driver without a
chamber."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from cellbench_espec.emulator import serve
from cellbench_sdk.cli import console


def register(app: typer.Typer) -> None:
    """Add ``cellbench espec`` with its ``emulate`` command to ``app``."""
    espec = typer.Typer(help="ESPEC climate chambers (P300 / SCP-220 controllers).",
                        no_args_is_help=True)

    @espec.command()
    def emulate(
        port: Annotated[int, typer.Option(help="TCP port to listen on")] = 10001,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        speed: Annotated[float, typer.Option(min=0.0, help="model time per wall second")] = 1.0,
        humidity: Annotated[bool, typer.Option(help="the chamber controls humidity")] = False,
    ) -> None:
        """Serve an emulated ESPEC controller on TCP, as a serial server would, until Ctrl-C.

        A station reaches it with [chambers.settings] address = "HOST:PORT".
        """
        console.print(f"ESPEC emulator on {host}:{port} (speed {speed:g}, humidity "
                      f"{'on' if humidity else 'off'}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(host, port, speed=speed, humidity=humidity))

    app.add_typer(espec, name="espec")

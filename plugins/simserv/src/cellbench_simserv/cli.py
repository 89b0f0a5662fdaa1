"""``cellbench simserv emulate``: an emulated SIMSERV controller for trying the plugin."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from cellbench_sdk.cli import console, fail
from cellbench_simserv.emulator import serve
from cellbench_simserv.protocol import DEFAULT_PORT


def register(main_app: typer.Typer) -> None:
    """Add ``cellbench simserv`` and its ``emulate`` command to ``main_app``."""
    app = typer.Typer(help="Weiss Technik / Vötsch chambers over SIMSERV.", no_args_is_help=True)

    @app.command()
    def emulate(
        port: Annotated[int, typer.Option(help="TCP port to listen on.")] = DEFAULT_PORT,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        speed: Annotated[float, typer.Option(help="Model seconds per wall second.")] = 1.0,
        humidity: Annotated[bool, typer.Option(help="Control humidity as well.")] = False,
    ) -> None:
        """Run an emulated SIMSERV controller (one chamber, thermal model) until Ctrl-C."""
        if not speed > 0:
            fail(f"--speed must be positive, not {speed:g}", code=2)
        console.print(f"SIMSERV emulator on {host}:{port}, speed {speed:g}, "
                      f"humidity {'on' if humidity else 'off'}; Ctrl-C stops it")
        try:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve(host, port, speed=speed, humidity=humidity))
        except OSError as err:  # the port is taken, the address is not ours
            fail(f"cannot listen on {host}:{port}: {err.strerror or err}")

    main_app.add_typer(app, name="simserv")

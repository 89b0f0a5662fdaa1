"""``cellbench scpi-logger emulate``: an emulated data logger for trying the driver without
one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from cellbench_scpi_logger.emulator import serve
from cellbench_sdk.cli import console, fail


def register(app: typer.Typer) -> None:
    """Add ``cellbench scpi-logger`` with its ``emulate`` command to ``app``."""
    logger = typer.Typer(help="Keysight 34970A / DAQ970A data loggers.", no_args_is_help=True)

    @logger.command()
    def emulate(
        port: Annotated[int, typer.Option(help="TCP port to listen on")] = 5025,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        model: Annotated[str, typer.Option(help="DAQ970A or 34970A")] = "DAQ970A",
        slots: Annotated[str, typer.Option(
            help="channels of the card in each slot, such as 20,20,0")] = "20,20,0",
    ) -> None:
        """Serve an emulated logger on TCP until Ctrl-C.

        A station reaches it with [devices.settings] address = "HOST:PORT".
        """
        if model not in ("DAQ970A", "34970A"):
            fail(f"--model {model!r}: DAQ970A or 34970A")
        try:
            counts = [int(n) for n in slots.split(",")]
        except ValueError:
            fail(f"--slots {slots!r}: channel counts separated by commas, such as 20,20,0")
        if len(counts) != 3 or not all(0 <= n <= 40 for n in counts):
            fail(f"--slots {slots!r}: three counts of 0..40 channels, one per slot")
        cards = {slot: n for slot, n in enumerate(counts, 1) if n}
        console.print(f"{model} emulator on {host}:{port} (cards {cards}); Ctrl-C stops it")
        try:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve(host, port, model=model, cards=cards))
        except OSError as err:  # the port is taken, the address is not ours
            fail(f"cannot listen on {host}:{port}: {err.strerror or err}")

    app.add_typer(logger, name="scpi-logger")

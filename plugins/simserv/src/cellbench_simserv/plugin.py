"""Registers the SIMSERV climate chamber and the ``cellbench simserv`` commands."""

from __future__ import annotations

import typer

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_simserv.settings import SimservSettings


@hookimpl
def cellbench_climate_chambers() -> list[Descriptor]:
    """The SIMSERV chamber."""
    return [
        Descriptor(
            Kind.CLIMATE_CHAMBER,
            "simserv",
            "cellbench_simserv.chamber:create_chamber",
            "Weiss Technik / Vötsch chamber controllers over SIMSERV (TCP port 2049)",
            SimservSettings,
            emulator="cellbench_simserv.emulator:serve",
        )
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench simserv emulate``: an emulated controller."""
    from cellbench_simserv.cli import register

    register(app)

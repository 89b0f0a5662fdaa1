"""Registration of the web interface with cellbench: the station interface and the
``cellbench web`` command (read-only over a database)."""

from __future__ import annotations

import typer

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_web.settings import WebSettings


@hookimpl
def cellbench_interfaces() -> list[Descriptor]:
    """The web interface a station serves from an ``[[interfaces]]`` section."""
    return [Descriptor(Kind.INTERFACE, "web", "cellbench_web.interface:WebInterface",
                       "web dashboard and HTTP API (live over WebSocket)", WebSettings)]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench web``: the pages and API read-only over a station or central database."""
    from cellbench_web.cli import register

    register(app)

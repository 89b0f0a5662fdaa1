"""The ``cellbench`` command line (Typer and rich)."""

from __future__ import annotations

from cellbench_core.cli import battery, database, plot, queue, running, serve, sync
from cellbench_core.cli.app import app
from cellbench_core.plugins import PluginManager

__all__ = ["app", "battery", "database", "main", "plot", "queue", "running", "serve",
           "sync"]


def main() -> None:
    """Run the command line, with the commands that plugins add."""
    manager = PluginManager()
    manager.load()
    manager.hook.cellbench_cli(app=app)
    app()

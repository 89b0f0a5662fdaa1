"""The Typer application every command module adds itself to, the ``plugins`` command, and the
plugins a command with a station file uses."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from typer.core import TyperOption

from cellbench_core.cli.console import console, fail
from cellbench_core.plugins import PluginError, PluginManager, loaded_plugins
from cellbench_core.station import StationConfig


def _no_placeholder_for_flags() -> None:
    """Show no value placeholder after flags in ``--help``: Typer shows ``<bool>`` after every
    flag, which reads as if the flag took a value."""
    type_placeholder = TyperOption.display_type_rich

    def placeholder(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else type_placeholder(self, ctx)

    TyperOption.display_type_rich = placeholder  # type: ignore[method-assign]


_no_placeholder_for_flags()

app = typer.Typer(
    name="cellbench",
    help="Open battery test system: run charge/discharge test plans on cycler channels, "
         "store every sample in SQL, and watch and control tests.\n\n"
         "Start with **cellbench demo**: a simulated 8-channel station runs a "
         "CC-CV cycling plan in seconds.",
    rich_markup_mode="markdown",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("plugins")
def plugins_command() -> None:
    """List installed plugins, their versions and capabilities, and why any failed to load.

    Disable a plugin with the environment variable CELLBENCH_DISABLE_PLUGINS=name[,name...]
    or in the station file under [plugins] disable = ["name"].
    """
    manager = loaded_plugins()
    table = Table(title="Plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "state", "capabilities / reason"):
        table.add_column(column)
    for info in manager.plugins:
        if info.state == "loaded":
            detail = "\n".join(f"{d.kind}: [bold]{d.name}[/bold] — {d.description}"
                               for d in manager.registry.all() if d.plugin == info.name)
            state = "[green]loaded[/green]"
        elif info.state == "failed":
            detail, state = f"[red]{info.reason}[/red]", "[red]failed[/red]"
        else:
            detail, state = "", "[yellow]disabled[/yellow]"
        table.add_row(info.name, info.distribution, info.version, state, detail or "-")
    if not manager.plugins:
        console.print("No plugins installed (entry-point group 'cellbench.plugins').")
        return
    console.print(table)


def station_plugins(config: StationConfig) -> PluginManager:
    """The process's plugins as ``config``'s ``[plugins]`` section selects them, for a station
    built from it; a plugin it enables that is missing or failed ends the command with exit 2."""
    try:
        return loaded_plugins().view(disable=config.plugins.disable,
                                     require=config.plugins.enable)
    except PluginError as err:
        fail(str(err), code=2)

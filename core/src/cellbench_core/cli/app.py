"""The Typer application and its small commands: ``plugins`` and ``plan check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cellbench_core.cli.console import console, fail
from cellbench_core.plan import PlanError, dump_plan, load_plan
from cellbench_core.plugins import PluginManager

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
plan_app = typer.Typer(help="Check and show test plans.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")


@app.command("plugins")
def plugins_command() -> None:
    """List installed plugins, their versions and capabilities, and why any failed to load.

    Disable a plugin with the environment variable CELLBENCH_DISABLE_PLUGINS=name[,name...]
    or in the station file under [plugins] disable = ["name"].
    """
    manager = PluginManager()
    manager.load()
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


@plan_app.command("check")
def plan_check(
    plan: Annotated[Path, typer.Argument(help="Plan file (YAML).", show_default=False)],
) -> None:
    """Check a plan and print it normalised; on an error name file, line and field, exit 2."""
    try:
        parsed = load_plan(plan)
    except PlanError as err:
        fail(str(err), code=2)
    console.print(dump_plan(parsed), markup=False, highlight=False, end="")

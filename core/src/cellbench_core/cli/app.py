"""The Typer application and its small commands: ``plugins``, ``plan check`` and ``plan show``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cellbench_core.cli.console import console, fail
from cellbench_core.plan import PlanError, dump_plan, load_plan
from cellbench_core.plan.imports import from_pybamm, pybamm_steps
from cellbench_core.plan.show import show_plan
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


class ImportFormat(StrEnum):
    """Procedure formats ``cellbench plan import`` reads."""

    PYBAMM = "pybamm"


@plan_app.command("import")
def plan_import(
    sources: Annotated[list[str], typer.Argument(
        help="PyBaMM experiment strings, or files holding them (a JSON list, or one per line).",
        show_default=False)],
    from_format: Annotated[ImportFormat, typer.Option(
        "--from", help="The format to import.", case_sensitive=False)],
    name: Annotated[str, typer.Option(help="The plan's name.")] = "Imported experiment",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the plan here instead of printing it.")] = None,
) -> None:
    """Convert another tool's procedure into a plan (YAML); on an error name the step, exit 2."""
    steps: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_file():
            try:
                steps += pybamm_steps(path.read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError, ValueError) as err:
                fail(f"{source}: {err}", code=2)
        else:
            steps.append(source)
    try:
        text = from_pybamm(steps, name)
    except PlanError as err:
        fail(str(err), code=2)
    if output is None:
        console.print(text, markup=False, highlight=False, end="", soft_wrap=True)
    else:
        output.write_text(text, encoding="utf-8")


@plan_app.command("show")
def plan_show(
    plan: Annotated[Path, typer.Argument(help="Plan file (YAML).", show_default=False)],
) -> None:
    """Print a plan as readable, numbered step text; on an error name file, line and field,
    exit 2."""
    try:
        parsed = load_plan(plan)
    except PlanError as err:
        fail(str(err), code=2)
    console.print(show_plan(parsed), markup=False, highlight=False, end="", soft_wrap=True)

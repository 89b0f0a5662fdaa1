"""``cellbench plugin new``: start a plugin from the template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellbench_sdk.cli import console, fail
from cellbench_sdk.template import KINDS, PluginKind, TemplateError, new_plugin


def register(app: typer.Typer) -> None:
    """Add the ``plugin`` command group to ``app``."""
    plugin_app = typer.Typer(help="Write cellbench plugins.", no_args_is_help=True)
    plugin_app.command("new")(plugin_new)
    app.add_typer(plugin_app, name="plugin")


def plugin_new(
    name: Annotated[str, typer.Argument(
        help="The plugin's name, e.g. acme-psu: its entry point and descriptor name; the "
             "distribution is cellbench-NAME, the package cellbench_NAME.",
        metavar="NAME", show_default=False)],
    kind: Annotated[PluginKind, typer.Option(
        "--kind", help="What the plugin offers.", show_default=False)],
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="The folder to write (it must not exist; default ./cellbench-NAME).",
        show_default=False)] = None,
) -> None:
    """Write a new plugin distribution: project file with its entry point, settings model,
    plugin module, a working skeleton and tests that run the SDK's conformance checks.

    The skeleton is a simulation held in memory that passes those checks; replace it with your
    device, and the tests tell you which rule of the contract it breaks.
    """
    try:
        target = new_plugin(name, kind, directory)
    except (TemplateError, OSError) as err:
        fail(str(err))
    console.print(f"Wrote {target}: a {KINDS[kind].title} plugin [bold]{name}[/bold].\n"
                  f"  cd {target}\n  uv run pytest        # the conformance checks pass\n"
                  "  uv pip install -e .   # then `cellbench plugins` lists it")

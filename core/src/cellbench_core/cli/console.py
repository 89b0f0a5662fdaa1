"""The shared rich console and the one way commands report a fatal error."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
error_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    error_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False,
                        soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``message`` as a warning on stderr; the command goes on."""
    error_console.print(f"[bold yellow]warning:[/bold yellow] {escape(message)}",
                        highlight=False, soft_wrap=True)

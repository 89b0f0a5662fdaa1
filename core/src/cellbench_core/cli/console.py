"""The shared rich console and the one way commands report a fatal error."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

console = Console()
error_console = Console(stderr=True)

#: Exit code of a station (`serve`, `run`) whose database stopped accepting writes for longer
#: than `storage_retry` (outputs off, tests ended where that could be recorded), or did not
#: accept a write as it started (nothing started, nothing changed). docs/station.md.
EXIT_STORAGE_FAILED = 4


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    # The message quotes what people wrote ("Time [s]", "[[devices]]", ":x:"): printed as it
    # is, never read as markup or emoji codes.
    error_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
                        soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``message`` as a warning on stderr; the command goes on."""
    error_console.print(Text.assemble(("warning:", "bold yellow"), " ", message),
                        highlight=False, soft_wrap=True)

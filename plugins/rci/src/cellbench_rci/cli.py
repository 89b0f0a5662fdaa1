"""``cellbench rci``: send remote-control commands to a running station, one-shot or at an
interactive prompt."""

from __future__ import annotations

import contextlib
import math
import ssl
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cellbench_rci.client import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    RciClient,
    RciError,
    Reply,
    tls_context,
)
from cellbench_sdk.cli import console, error_console, fail

HELP = f"""Send remote-control commands to a running station (its rci interface).

With COMMAND, send it, print the reply and exit: 0 on OK; 1 on ERR, with the error code and
message on stderr; 2 if the connection fails. STATE?, QUEUE?, BATTERY? and CHANNELS? print
tables; SUBSCRIBE prints the channel's samples as they come, until Ctrl-C. Without COMMAND,
open a prompt: type commands (HELP lists them, HELP STOP explains STOP), watch SUBSCRIBE'd
samples as they arrive, end with QUIT or Ctrl-D.

Examples:

    cellbench rci PING

    cellbench rci STATE? ALL

    cellbench rci START 3 cc-cv NMC-18650-A

    cellbench rci --host lab-pc-2 --token "$TOKEN" --tls-ca ca.pem STOP 3

    cellbench rci            # interactive; try SUBSCRIBE 1

The default port is {DEFAULT_PORT}. Prefer the environment variable CELLBENCH_RCI_TOKEN to
--token, so the token shows in no process list. The protocol: docs/rci.md.
"""

#: Column names of the tabular replies, in the order of a record's fields.
_COLUMNS = {
    "STATE?": ("ch", "state", "test", "step", "cycle", "U/V", "I/A", "T/°C", "Ah", "Wh",
               "time/s"),
    "QUEUE?": ("entry", "ch", "plan", "battery", "status", "test"),
    "BATTERY?": ("battery", "chemistry", "capacity/Ah"),
    "CHANNELS?": ("ch", "driver", "Umin/V", "Umax/V", "Imax/A"),
}
_TEXT_COLUMNS = {"state", "plan", "battery", "status", "chemistry", "driver"}
#: Decimals a table shows of a measured value: what a reading resolves (mV, mA, 0.1 °C...),
#: not the six significant digits the protocol carries.
_DECIMALS = {"U/V": 3, "I/A": 3, "T/°C": 1, "Ah": 4, "Wh": 3, "time/s": 0, "capacity/Ah": 3,
             "Umin/V": 3, "Umax/V": 3, "Imax/A": 3}
#: Columns that keep their whole width on a narrow terminal: which channel, and its state.
_KEPT_WHOLE = {"ch", "state", "entry", "battery"}


def _shown(column: str, field: str) -> str:
    """A field of a tabular reply as the table shows it: measured values rounded."""
    decimals = _DECIMALS.get(column)
    if decimals is None:
        return field
    try:
        value = float(field)
    except ValueError:
        return field
    return f"{value:.{decimals}f}" if math.isfinite(value) else field


def render(command: str, reply: Reply) -> None:
    """Print a reply: a table for the listing queries, ``OK`` for an empty payload, else the
    payload as it is."""
    words = command.split()
    query = words[0].upper() if words else ""
    columns = _COLUMNS.get(query)
    if columns is not None and not (query == "BATTERY?" and len(words) > 1):
        records = reply.records
        title = query.rstrip("?").lower()
        if query == "CHANNELS?" and records:
            title = f"channels ({records.pop(0)[0]})"  # the first record is the count
        if not records:
            console.print(f"({title}: none)", highlight=False)
            return
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True)
        for column, width in zip(columns, _widths(columns, records), strict=True):
            table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right",
                             no_wrap=True, min_width=width if column in _KEPT_WHOLE else None)
        for record in records:
            table.add_row(*(escape(_shown(column, field))
                            for column, field in zip(columns, record, strict=False)))
        console.print(table)
    elif query == "BATTERY?" and "=" in reply.payload:  # one battery: name=..,chemistry=..
        table = Table(show_header=False, box=None)
        for key, _, value in (item.partition("=") for item in reply.records[0]):
            table.add_row(f"[bold]{escape(key)}[/bold]", escape(value))
        console.print(table)
    else:
        console.print(reply.payload or "OK", markup=False, highlight=False)


def _widths(columns: tuple[str, ...], records: list[list[str]]) -> list[int]:
    """The width of each column's widest field or heading, as shown."""
    return [max([len(column), *(len(_shown(column, r[n])) for r in records if n < len(r))])
            for n, column in enumerate(columns)]


def _print_push(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def _interact(client: RciClient, target: str) -> None:
    """The prompt: one command per line until QUIT, Ctrl-D or Ctrl-C; pushed lines are printed
    as they arrive, between replies (never before the reply of the command that caused them)."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (input() then keeps a history and edits lines)
    # Commands piped in (cellbench rci < commands.txt) get the replies alone.
    prompt = "rci> " if sys.stdin.isatty() else ""
    if prompt:
        console.print(f"connected to {target}" + (f" as {client.role}" if client.role else "")
                      + "; HELP lists the commands, QUIT or Ctrl-D ends.", highlight=False)
    printing = threading.Lock()  # held from sending a command until its reply is printed

    def print_pushes() -> None:
        for push in client.pushes():
            with printing:
                _print_push(push)

    printer = threading.Thread(target=print_pushes, name="rci-pushes", daemon=True)
    printer.start()
    try:
        _prompt(client, prompt, printing)
    finally:  # the pushes that came before the end are printed before it
        client.close()
        printer.join(timeout=2.0)


def _prompt(client: RciClient, prompt: str, printing: threading.Lock) -> None:
    while True:
        try:
            line = input(prompt).strip()
        except (EOFError, KeyboardInterrupt):
            if prompt:
                console.print()  # the shell's prompt on a line of its own
            return
        if not line:
            continue
        with printing:
            try:
                reply = client.command(line)
            except RciError as err:
                error_console.print(f"[bold red]ERR {err.code}[/bold red] "
                                    f"{escape(err.message)}", highlight=False)
                continue
            except ValueError as err:  # not sendable (non-ASCII); nothing was sent
                error_console.print(f"[bold red]error:[/bold red] {escape(str(err))}")
                continue
            except (TimeoutError, ConnectionError) as err:
                fail(str(err), code=2)
            render(line, reply)
        if client.closed or line.split()[0].upper() == "QUIT":
            return


def rci_command(
    command: Annotated[list[str] | None, typer.Argument(
        help="A command and its arguments, e.g. STATE? 1-4 (none: interactive prompt).",
        show_default=False, metavar="COMMAND...")] = None,
    host: Annotated[str, typer.Option(help="Station host name or address.",
                                      envvar="CELLBENCH_RCI_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="rci TCP port.", min=1, max=65535,
                                      envvar="CELLBENCH_RCI_PORT")] = DEFAULT_PORT,
    token: Annotated[str | None, typer.Option(
        help="Access token (sent as AUTH); default from CELLBENCH_RCI_TOKEN.",
        envvar="CELLBENCH_RCI_TOKEN", show_default=False, show_envvar=False)] = None,
    tls_ca: Annotated[Path | None, typer.Option(
        "--tls-ca", help="Connect over TLS, trusting this CA certificate (PEM).",
        show_default=False)] = None,
    cert: Annotated[Path | None, typer.Option(
        help="With --tls-ca: client certificate (PEM) to present.", show_default=False)] = None,
    key: Annotated[Path | None, typer.Option(
        help="Private key of --cert (PEM), unless the --cert file holds it.",
        show_default=False)] = None,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the connection and for each reply.", min=0.1,
        max=3600)] = DEFAULT_TIMEOUT_S,
) -> None:
    tls: ssl.SSLContext | None = None
    if tls_ca is not None:
        try:
            tls = tls_context(tls_ca, cert, key)
        except ValueError as err:
            fail(str(err), code=2)
    elif cert is not None or key is not None:
        fail("--cert and --key need --tls-ca (they are used over TLS only)", code=2)
    target = f"{host}:{port}" + (" (TLS)" if tls is not None else "")
    line = " ".join(command or [])
    try:
        client = RciClient.connect(host, port, token=token, tls=tls, timeout=timeout)
    except RciError as err:  # AUTH refused
        fail(f"{target}: AUTH: ERR {err.code} {err.message}")
    except (OSError, ssl.SSLError) as err:
        fail(f"cannot connect to the rci server at {target}: {err}", code=2)
    with client:
        if not line:
            _interact(client, target)
            return
        try:
            reply = client.command(line)
        except RciError as err:
            fail(f"{line}: ERR {err.code} {err.message}")
        except ValueError as err:
            fail(str(err), code=2)
        except (TimeoutError, ConnectionError) as err:
            fail(str(err), code=2)
        render(line, reply)
        if line.split()[0].upper() == "SUBSCRIBE":
            # Watching from the shell: the samples until Ctrl-C or the station ends.
            with contextlib.suppress(KeyboardInterrupt):
                for push in client.pushes():
                    _print_push(push)


rci_command.__doc__ = HELP

#: The command alone, for its generated reference: ``python -m typer cellbench_rci.cli utils docs
#: --name "cellbench rci" --output docs/rci-cli.md`` (a test checks that it is current).
app = typer.Typer(rich_markup_mode="markdown", pretty_exceptions_enable=False,
                  add_completion=False)
app.command("rci", context_settings={"allow_interspersed_args": False})(rci_command)


def register(main_app: typer.Typer) -> None:
    """Add ``rci`` to the ``cellbench`` command line."""
    main_app.command("rci", context_settings={"allow_interspersed_args": False})(rci_command)

"""What a plugin's ``cellbench`` commands (added by its ``cellbench_cli`` hook) use, so that
they look and fail like the built-in ones: the consoles, :func:`fail`, and the ``--db`` /
``--station`` options that name the station's database::

    @app.command("report")
    def report(test: int, db: DbOption = None, station: StationOption = None) -> None:
        with opened(database_url(db, station)) as database:
            if database.test(test) is None:
                fail(f"no test {test}", code=2)
            console.print(...)

``opened`` opens for reading: a missing SQLite file, or a database without the cellbench
tables, ends the command with an error saying so (a command that only reads never creates a
database). A command that writes passes ``create=True``. Either way a URL that cannot be opened
ends the command with one line naming the problem and its fix (exit 2).
"""

from __future__ import annotations

import socket
from pathlib import Path

from cellbench_core.cli.console import console, error_console, fail
from cellbench_core.cli.database import DbOption, StationOption, database_url, opened
from cellbench_core.station import StationError, load_station

__all__ = [
    "DbOption",
    "StationOption",
    "console",
    "database_url",
    "error_console",
    "fail",
    "opened",
    "station_name",
]


def station_name(station: Path | None) -> str:
    """The station's name in the station file ``station`` (without one: this host's name); a
    bad station file ends the command (exit 2)."""
    if station is None:
        return socket.gethostname()
    try:
        return load_station(station).station.name
    except StationError as err:
        fail(str(err), code=2)

"""``cellbench export`` and ``cellbench import basytec``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cellbench_export.basytec import write_basytec
from cellbench_export.basytec_import import BasytecFileError, import_basytec
from cellbench_export.bdf import BdfFormat, write_bdf
from cellbench_sdk.cli import (
    DbOption,
    StationOption,
    console,
    database_url,
    error_console,
    fail,
    opened,
    station_name,
)
from cellbench_sdk.storage import Database, StorageError


class ExportFormat(StrEnum):
    """The file formats ``cellbench export`` writes."""

    BASYTEC = "basytec"
    BDF_CSV = "bdf-csv"
    BDF_PARQUET = "bdf-parquet"


def export_file(db: Database, test_id: int, form: ExportFormat, output: Path) -> int:
    """Write test ``test_id`` to ``output`` in ``form``; return the number of samples."""
    if form is ExportFormat.BASYTEC:
        return write_basytec(db, test_id, output)
    bdf = BdfFormat.CSV if form is ExportFormat.BDF_CSV else BdfFormat.PARQUET
    return write_bdf(db, test_id, output, bdf)


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``import basytec`` to the command line."""
    import_app = typer.Typer(help="Bring result files of other systems into the database.",
                             no_args_is_help=True)
    app.add_typer(import_app, name="import")

    @app.command("export")
    def export_command(
        test: Annotated[int, typer.Argument(help="Test id.", show_default=False)],
        form: Annotated[ExportFormat, typer.Option("--format", "-f", help="File format.",
                                                   show_default=False)],
        output: Annotated[Path, typer.Option("-o", "--output", help="File to write.",
                                             show_default=False)],
        db: DbOption = None,
        station: StationOption = None,
    ) -> None:
        """Write TEST (finished or still running) as a BaSyTec-style result file or a Battery
        Data Format file (CSV or Parquet).

        Example: cellbench export 3 --format bdf-parquet -o cell3.bdf.parquet
        """
        with opened(database_url(db, station)) as database:
            try:
                rows = export_file(database, test, form, output)
            except (StorageError, ValueError, OSError) as err:
                fail(str(err), code=2)
        console.print(f"wrote {output} ({rows:,} samples)")

    @import_app.command("basytec")
    def import_basytec_command(
        files: Annotated[list[Path], typer.Argument(help="BaSyTec result files (.txt).",
                                                    show_default=False)],
        db: DbOption = None,
        station: StationOption = None,
        battery: Annotated[str | None, typer.Option(
            help="Stored battery the tests ran on (default: the file's ~Battery: if stored).")
        ] = None,
        channel: Annotated[str | None, typer.Option(
            help="Channel to record the tests on (default: the file's ~Testchannel:).")
        ] = None,
    ) -> None:
        """Store BaSyTec result files as tests: samples, aux columns and the steps found from
        the Line, Step, Cyc-Count and t-Step columns. Each file is checked completely first;
        a bad file is reported with its line and column and the rest are still imported.
        """
        name = station_name(station)
        failed = 0
        with opened(database_url(db, station), create=True) as database:
            for path in files:
                try:
                    test_id = import_basytec(database, path, battery=battery, channel=channel,
                                             station=name)
                except (BasytecFileError, StorageError, ValueError, OSError) as err:
                    error_console.print(f"[bold red]error:[/bold red] {err}", highlight=False,
                                        soft_wrap=True)
                    failed += 1
                    continue
                console.print(f"{path}: test {test_id}")
        if failed:
            fail(f"{failed} of {len(files)} files were not imported", code=2)

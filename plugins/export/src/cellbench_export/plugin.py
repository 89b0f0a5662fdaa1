"""Registration of the export commands, the ``basytec-files`` and ``bdf-files`` sync targets and
the download formats with cellbench."""

from __future__ import annotations

import typer

from cellbench_export.cli import register
from cellbench_export.files import BasytecFilesSettings, BdfFilesSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench export`` and ``cellbench import basytec``."""
    register(app)


@hookimpl
def cellbench_sync_targets() -> list[Descriptor]:
    """One BaSyTec-style result file per test, kept up to date; one BDF file per ended test."""
    return [
        Descriptor(
            Kind.SYNC_TARGET,
            "basytec-files",
            "cellbench_export.files:BasytecFilesTarget",
            "one BaSyTec-style result file per test in a folder, up to date while tests run",
            BasytecFilesSettings,
        ),
        Descriptor(
            Kind.SYNC_TARGET,
            "bdf-files",
            "cellbench_export.files:BdfFilesTarget",
            "one Battery Data Format file (Parquet or CSV) per test in a folder, once it ended",
            BdfFilesSettings,
        ),
    ]


@hookimpl
def cellbench_export_formats() -> list[Descriptor]:
    """The files of a test as downloads (the web interface's): BaSyTec ASCII, BDF CSV and
    Parquet."""
    return [
        Descriptor(Kind.EXPORT_FORMAT, "basytec", "cellbench_export.formats:BasytecAscii",
                   "BaSyTec-style result file (Latin-1, tab-separated)"),
        Descriptor(Kind.EXPORT_FORMAT, "bdf-csv", "cellbench_export.formats:BdfCsv",
                   "Battery Data Format, CSV"),
        Descriptor(Kind.EXPORT_FORMAT, "bdf-parquet", "cellbench_export.formats:BdfParquet",
                   "Battery Data Format, Parquet"),
    ]

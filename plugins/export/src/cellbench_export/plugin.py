"""Registration of the export commands and the ``basytec-files`` sync target with cellbench."""

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

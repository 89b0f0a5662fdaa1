"""cellbench file exports: BaSyTec-style result files (written incrementally while a test runs)
and Battery Data Format files (CSV and Parquet), and the import of BaSyTec result files."""

from cellbench_export.basytec import BasytecWriter, write_basytec
from cellbench_export.basytec_import import (
    BasytecFile,
    BasytecFileError,
    import_basytec,
    read_basytec,
)
from cellbench_export.bdf import BdfFormat, write_bdf

__all__ = [
    "BasytecFile",
    "BasytecFileError",
    "BasytecWriter",
    "BdfFormat",
    "import_basytec",
    "read_basytec",
    "write_basytec",
    "write_bdf",
]

"""cellbench file exports: BaSyTec-style result files (written incrementally while a test runs)
and Battery Data Format files (CSV and Parquet), and the import of BaSyTec result files.

The import lives here, not in a distribution of its own, because one distribution owns each
file format both ways: the writer and the reader of a format share its layout and are tested
against each other (an exported file imports back to the same values).
"""

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

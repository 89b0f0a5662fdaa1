"""The export formats this plugin offers for downloads (``cellbench_export_formats``): the
files of docs/export.md, streamed a chunk of samples at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from cellbench_export.basytec import ENCODING, encode_basytec
from cellbench_export.bdf import BdfFormat, encode_bdf
from cellbench_sdk.export import ExportFormat
from cellbench_sdk.storage import SampleChunk, TestRecord


class BasytecAscii(ExportFormat):
    """The BaSyTec-style result file (Latin-1, tab-separated)."""

    suffix = ".txt"
    media_type = f"text/plain; charset={ENCODING}"
    title = "BaSyTec ASCII"

    def encode(self, test: TestRecord, aux: Sequence[str], chunks: Iterable[SampleChunk]
               ) -> Iterator[bytes]:
        return encode_basytec(test, aux, chunks)


class _Bdf(ExportFormat):
    """The Battery Data Format in the file format ``bdf_format`` names."""

    bdf_format: BdfFormat

    def encode(self, test: TestRecord, aux: Sequence[str], chunks: Iterable[SampleChunk]
               ) -> Iterator[bytes]:
        return encode_bdf(test.id, aux, chunks, self.bdf_format)


class BdfCsv(_Bdf):
    """The Battery Data Format as CSV."""

    suffix = ".csv"
    media_type = "text/csv; charset=utf-8"
    title = "BDF CSV"
    bdf_format = BdfFormat.CSV


class BdfParquet(_Bdf):
    """The Battery Data Format as Parquet."""

    suffix = ".parquet"
    media_type = "application/vnd.apache.parquet"
    title = "BDF Parquet"
    bdf_format = BdfFormat.PARQUET

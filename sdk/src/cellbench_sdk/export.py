"""File formats a test can be downloaded in: what an export plugin offers and the web interface
(or any other plugin) uses, without either importing the other.

An export plugin registers each format with the ``cellbench_export_formats`` hook, a descriptor
of kind ``Kind.EXPORT_FORMAT`` whose factory builds an :class:`ExportFormat`::

    from cellbench_sdk import Descriptor, Kind, hookimpl

    @hookimpl
    def cellbench_export_formats() -> list[Descriptor]:
        return [Descriptor(Kind.EXPORT_FORMAT, "acme-csv", "acme.export:AcmeCsv",
                           "ACME's CSV layout")]

A user of the formats finds them with :func:`export_formats` and streams a test through one::

    for piece in formats["bdf-csv"].encode(test, aux_names(db, test.id),
                                           sample_chunks(db, test.id)):
        response.write(piece)
"""

from __future__ import annotations

import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, ClassVar

from pydantic import BaseModel

from cellbench_core.descriptors import Kind
from cellbench_core.plugins import loaded_plugins
from cellbench_core.storage import SampleChunk, TestRecord

log = logging.getLogger(__name__)


class ExportFormat(ABC):
    """A file format of a whole test: its ``suffix`` (``.csv``), ``media_type`` and
    ``title`` for people, and :meth:`encode`."""

    suffix: ClassVar[str]
    media_type: ClassVar[str]
    title: ClassVar[str]

    def __init__(self, settings: BaseModel | None = None) -> None:
        self.settings = settings

    @abstractmethod
    def encode(self, test: TestRecord, aux: Sequence[str], chunks: Iterable[SampleChunk]
               ) -> Iterator[bytes]:
        """The file of ``test`` a piece at a time: ``chunks`` are its samples in ``seq`` order
        (:func:`cellbench_sdk.storage.sample_chunks`), ``aux`` the aux signals that get a
        column (values of others are left out). Pieces are yielded as the chunks are read, so
        memory stays bounded whatever the test's length. ValueError, raised before the first
        piece, if the test cannot be written in this format (an aux name the format cannot
        hold)."""

    def write(self, test: TestRecord, aux: Sequence[str], chunks: Iterable[SampleChunk],
              stream: BinaryIO) -> int:
        """Write the file of ``test`` to ``stream``; return the number of bytes written."""
        written = 0
        for piece in self.encode(test, aux, chunks):
            stream.write(piece)
            written += len(piece)
        return written


class Pieces(io.RawIOBase):
    """A binary sink that keeps what is written to it until :meth:`take` (a file streamed a
    piece at a time by a writer that wants a file object, such as Arrow's and Parquet's)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._parts.append(piece)
        self._position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        """What was written since the last take."""
        taken = b"".join(self._parts)
        self._parts.clear()
        return taken


def export_formats() -> dict[str, ExportFormat]:
    """The export formats the installed plugins offer, by name (empty when none is
    installed). A format whose implementation fails to import is logged and left out."""
    formats: dict[str, ExportFormat] = {}
    for descriptor in loaded_plugins().registry.all(Kind.EXPORT_FORMAT):
        try:
            made = descriptor.create()
        except Exception as err:  # a broken plugin must not take its user down
            log.error("export format %r of plugin %r failed to load: %s", descriptor.name,
                      descriptor.plugin, err)
            continue
        if not isinstance(made, ExportFormat):
            log.error("export format %r of plugin %r is a %s, not an ExportFormat",
                      descriptor.name, descriptor.plugin, type(made).__name__)
            continue
        formats[descriptor.name] = made
    return formats

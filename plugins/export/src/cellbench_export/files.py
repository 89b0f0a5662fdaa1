"""File sync targets (docs/export.md): ``basytec-files`` keeps one BaSyTec-style result file
per test in a folder up to date while the tests run and completes it once they end;
``bdf-files`` writes each test's Battery Data Format file once the test has ended."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cellbench_export.basytec import BasytecWriter
from cellbench_export.bdf import BdfFormat, write_bdf
from cellbench_sdk.storage import Database, TestStatus
from cellbench_sdk.sync import SyncReport, SyncTarget

log = logging.getLogger(__name__)


class BasytecFilesSettings(BaseModel):
    """Which folder the files go to, and the station name their names start with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: Path = Field(description="the folder of the result files (created if missing)")
    station: str = Field(default_factory=socket.gethostname, min_length=1, max_length=100,
                         pattern=r"^[^/\\\x00-\x1f]+$",
                         description="the first part of every file name, STATION-TEST.txt "
                                     "(default: the host name)")


class BasytecFilesTarget(SyncTarget):
    """Keeps ``STATION-TEST.txt`` in the folder for every test of the local database.

    The files themselves are the positions: after a restart each file carries on where it ends
    (:meth:`BasytecWriter.resume`), and a file whose test had ended is left as it is.
    """

    def __init__(self, settings: BasytecFilesSettings) -> None:
        self.settings = settings
        self._writers: dict[int, BasytecWriter] = {}
        self._unwritable: set[int] = set()

    def path(self, test_id: int) -> Path:
        """The result file of a test."""
        return self.settings.folder / f"{self.settings.station}-{test_id}.txt"

    def open(self) -> None:
        """Create the folder if missing."""
        self.settings.folder.mkdir(parents=True, exist_ok=True)

    def sync_once(self, local: Database) -> SyncReport:
        """Append what is new to the file of every test that has not ended in its file."""
        rows = 0
        for test in local.tests():
            if test.id in self._unwritable:
                continue
            writer = self._writers.get(test.id)
            if writer is None:
                writer = BasytecWriter.resume(local, test.id, self.path(test.id))
                self._writers[test.id] = writer
            if writer.complete:
                continue
            try:
                rows += writer.update()
            except ValueError as err:  # an aux signal the format cannot hold: this test only
                log.error("basytec-files: no file for test %d: %s", test.id, err)
                self._unwritable.add(test.id)
        return SyncReport(rows=rows, samples=rows, caught_up=True, backlog_age_s=0.0)

    def close(self) -> None:
        """Forget the open writers; the next :meth:`open` resumes from the files."""
        self._writers.clear()
        self._unwritable.clear()


class BdfFilesSettings(BasytecFilesSettings):
    """The folder, the station name, and which BDF file format."""

    format: BdfFormat = Field(default=BdfFormat.PARQUET, description="parquet or csv")


class BdfFilesTarget(SyncTarget):
    """Writes ``STATION-TEST.parquet`` (or ``.csv``) in the folder for every test of the local
    database once the test has ended. A file appears complete or not at all (it is renamed
    into place), so an existing file is a test already written."""

    def __init__(self, settings: BdfFilesSettings) -> None:
        self.settings = settings
        self._done: set[int] = set()

    def path(self, test_id: int) -> Path:
        """The BDF file of a test."""
        return self.settings.folder / f"{self.settings.station}-{test_id}.{self.settings.format}"

    def open(self) -> None:
        """Create the folder if missing."""
        self.settings.folder.mkdir(parents=True, exist_ok=True)

    def sync_once(self, local: Database) -> SyncReport:
        """Write the file of every test that has ended and has none yet."""
        rows = 0
        for test in local.tests():
            if test.id in self._done or test.status is TestStatus.RUNNING:
                continue
            path = self.path(test.id)
            if not path.exists():
                try:
                    rows += write_bdf(local, test.id, path, self.settings.format)
                except ValueError as err:  # an aux signal named like a BDF column
                    log.error("bdf-files: no file for test %d: %s", test.id, err)
            self._done.add(test.id)
        return SyncReport(rows=rows, samples=rows, caught_up=True, backlog_age_s=0.0)

    def close(self) -> None:
        """Forget which tests are written; the next :meth:`open` finds them from the files."""
        self._done.clear()

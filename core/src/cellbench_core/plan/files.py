"""The files a plan reads besides itself (included plans, profile tables): which it may read, and
how they are read.

One :class:`PlanFiles` policy is handed to the parser and used for includes and tables alike. A
plan run from the command line reads relative to its own file, anywhere (``PlanFiles()``). A plan
that arrives as text from elsewhere — a queue row, an rci or web start, a test resumed from the
database — is confined to the station's plans folder (``PlanFiles(root=plans_dir)``): every file
it names, symlinks followed, must lie inside it.

Either way a file is read only if it is a regular file (no named pipe, device or folder) no larger
than its cap, and it is opened without blocking, so a named pipe never hangs the reader.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cellbench_core.plan.tables import Table, TableLoader, no_tables

#: The largest plan file (the plan and each file it includes), in bytes.
MAX_PLAN_BYTES = 1 << 20
#: The largest profile table file, in bytes.
MAX_TABLE_BYTES = 64 << 20

_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class FileRefused(ValueError):
    """A file a plan names may not, or cannot, be read: ``reason`` says why (the rule), and the
    message names the file too."""

    def __init__(self, file: object, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.reason = reason


def read_regular(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` (``what`` it is, for errors: "the plan"), at most
    ``max_bytes``; FileRefused says why not."""
    with _open_regular(path, max_bytes, what) as file:
        try:
            data = file.read(max_bytes + 1)
        except OSError as error:
            raise FileRefused(path, f"cannot read {what}: {error.strerror or error}") from None
    if len(data) > max_bytes:  # it grew since it was opened
        raise FileRefused(path, f"{what} is larger than {max_bytes} bytes")
    return data


def _open_regular(path: Path, max_bytes: int, what: str) -> BinaryIO:
    """``path`` opened for reading without blocking, once it is known to be a regular file of at
    most ``max_bytes``."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        raise FileRefused(path, f"cannot read {what}: {error.strerror or error}") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        problem = f"cannot read {what}: it is {kind}; only regular files are read"
    elif info.st_size > max_bytes:
        problem = f"{what} is larger than {max_bytes} bytes"
    if problem is not None:
        os.close(fd)
        raise FileRefused(path, problem)
    return os.fdopen(fd, "rb")


@dataclass(frozen=True)
class PlanFiles:
    """The policy for the files a plan reads: ``root`` (a folder) confines them to it, None lets
    a plan read files anywhere; ``tables`` reads profile tables (None: a table is an error)."""

    root: Path | None = None
    tables: TableLoader | None = None

    def folder(self, source: str) -> Path:
        """The folder relative file names of the plan read from ``source`` start from: its file's
        folder, or for a confined plan the plans folder unless the file lies inside it (the
        source of a plan that arrives as text is only a name; it must not move the root)."""
        folder = Path(source).parent
        if self.root is None:
            return folder
        return folder if folder.is_absolute() and self._inside(folder) else self.root

    def locate(self, name: str, folder: Path) -> Path:
        """The file ``name`` (as a plan wrote it) relative to ``folder``; FileRefused if the
        policy keeps the plan from it."""
        return self._confined(name, folder / name)

    def read_plan(self, path: Path) -> bytes:
        """The bytes of the plan file ``path``, at most :data:`MAX_PLAN_BYTES`."""
        return read_regular(self._confined(str(path), path), MAX_PLAN_BYTES, "the plan")

    def table(self, path: Path) -> Table:
        """The profile table in the file ``path`` (located by :meth:`locate`), read by the
        table loader once the file is known to be a regular file within
        :data:`MAX_TABLE_BYTES`."""
        path = self._confined(str(path), path)
        loader = self.tables or no_tables
        if loader is not no_tables:
            _open_regular(path, MAX_TABLE_BYTES, "the table").close()  # before the loader
        return loader(path)

    def _confined(self, name: str, path: Path) -> Path:
        """``path`` (``name`` as written), resolved if the policy confines plans, or
        FileRefused if it lies outside their folder."""
        if self.root is None:
            return path
        if not self._inside(path):
            raise FileRefused(name, f"outside the plans folder {self.root}: a plan that arrives "
                                    "as text (queue, rci, web) reads only files inside it, "
                                    "symlinks followed")
        return path.resolve()

    def _inside(self, path: Path) -> bool:
        assert self.root is not None
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
        return resolved.is_relative_to(self.root.resolve())


__all__ = ["MAX_PLAN_BYTES", "MAX_TABLE_BYTES", "FileRefused", "PlanFiles", "read_regular"]

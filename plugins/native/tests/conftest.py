"""Driver libraries compiled with gcc for the tests, and a fault folder to make one misbehave.

``libraries`` builds, once per session: the example driver of docs/native.md, and
tests/c/faulty_driver.c three times: as it is, without ``cb_write``, and claiming header
version 99. The faulty library reads what to do wrong from a folder (its config text): the
``faults`` fixture is such a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cellbench_native.build import CompilerMissing, compile_library
from cellbench_native.channels import NativeChannels
from cellbench_native.device import NativeDevice
from cellbench_native.hosted import HostedLibrary
from cellbench_native.settings import NativeSettings

EXAMPLE_SOURCE = Path(__file__).parents[1] / "examples" / "example_driver.c"
FAULTY_SOURCE = Path(__file__).parent / "c" / "faulty_driver.c"


@dataclass(frozen=True)
class Libraries:
    """Paths of the compiled libraries."""

    example: Path
    faulty: Path
    without_write: Path
    version_99: Path


def _compiled(source: Path, target: Path, *defines: str) -> Path:
    try:
        return compile_library(source, target, *defines)
    except CompilerMissing as missing:
        if os.environ.get("CI"):
            pytest.fail(str(missing))
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> Libraries:
    """The test libraries, compiled once per session."""
    folder = tmp_path_factory.mktemp("libraries")
    return Libraries(
        example=_compiled(EXAMPLE_SOURCE, folder / "libexample.so"),
        faulty=_compiled(FAULTY_SOURCE, folder / "libfaulty.so"),
        without_write=_compiled(FAULTY_SOURCE, folder / "libnowrite.so", "OMIT_WRITE"),
        version_99=_compiled(FAULTY_SOURCE, folder / "libv99.so", "REPORTED_VERSION=99"))


class Faults:
    """The faulty library's folder: what it is told to do wrong, and the calls it logged."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def config(self) -> str:
        """The config text that points the library at this folder."""
        return str(self.folder)

    def set(self, action: str, argument: str) -> None:
        """From now on: ``segv|abort|hang|fail FUNCTION`` or ``garbage KIND``."""
        (self.folder / "fault").write_text(f"{action} {argument}\n")

    def clear(self) -> None:
        """From now on, behave."""
        (self.folder / "fault").unlink(missing_ok=True)

    def calls(self) -> list[tuple[int, str, int]]:
        """Every call logged so far: (process id, function, argument)."""
        log = self.folder / "calls.log"
        if not log.exists():
            return []
        return [(int(pid), function, int(argument)) for pid, function, argument
                in (line.split() for line in log.read_text().splitlines())]


@pytest.fixture
def faults(tmp_path: Path) -> Faults:
    """A fresh folder for the faulty library, behaving until told otherwise."""
    folder = tmp_path / "faulty"
    folder.mkdir()
    return Faults(folder)


class Make:
    """Builds the plugin's devices from settings, as a station does."""

    @staticmethod
    def osi(library: Path, **settings: Any) -> NativeDevice:
        """An OSI device of ``library`` with ``settings``."""
        return NativeDevice(NativeSettings(library=library, **settings))

    @staticmethod
    def bank(library: Path, **settings: Any) -> NativeChannels:
        """A channel bank of ``library`` with ``settings``."""
        return NativeChannels(NativeSettings(library=library, **settings))

    @staticmethod
    def hosted(device: NativeDevice | NativeChannels) -> HostedLibrary:
        """The station's side of an open device's host process."""
        library = device.handle.library
        assert isinstance(library, HostedLibrary), f"{device.name} is not hosted: {library}"
        return library


@pytest.fixture
def make() -> Make:
    """Builds OSI devices and channel banks of a library."""
    return Make()

"""One open device of a vendor library, behind its worker thread: loading it (in a host process
or in-process), every call with its timeout, and the library's failures as cellbench's typed
errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from cellbench_native.hosted import HostedLibrary
from cellbench_native.library import BAD_REPLY, LOAD, NativeError, NativeLibrary, Variant
from cellbench_native.settings import NativeSettings
from cellbench_sdk import (
    BadReply,
    DeviceClosed,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    DeviceWorker,
    NotSupported,
    OutOfRange,
)
from cellbench_sdk.driver_header import api_version, declarations

T = TypeVar("T")
Library = NativeLibrary | HostedLibrary

log = logging.getLogger(__name__)

#: The typed error for each status a library call can end with.
ERRORS: dict[str, type[DeviceError]] = {
    "CB_ERROR": DeviceError,
    "CB_NOT_SUPPORTED": NotSupported,
    "CB_OUT_OF_RANGE": OutOfRange,
    "CB_TIMEOUT": DeviceTimeout,
    "CB_DISCONNECTED": DeviceConnectionError,
    LOAD: DeviceConnectionError,
    BAD_REPLY: BadReply,
}


class Handle:
    """A device of the library ``settings`` name, opened as ``variant``; ``name`` is the
    device's name for errors. All calls run on one worker thread, in order."""

    def __init__(self, settings: NativeSettings, variant: Variant, name: str) -> None:
        self.settings = settings
        self.variant = variant
        self.name = name
        self.library: Library | None = None
        self._worker: DeviceWorker | None = None

    @property
    def call_timeout_s(self) -> float:
        """Wall seconds one call may take on the worker thread. A hosted library enforces
        ``call_timeout_s`` itself and may then restart its host, which this leaves time for."""
        s = self.settings
        if s.isolation == "in-process":
            return s.call_timeout_s
        return s.start_timeout_s + 3 * s.call_timeout_s + 1.0

    async def open(self, describe: Callable[[Library], T]) -> T:
        """Load the library, open the device and return ``describe(library)``; on any failure
        nothing stays loaded or running."""
        s = self.settings
        self._worker = DeviceWorker(self.name, self.call_timeout_s)

        def start() -> tuple[Library, T]:
            library: Library
            if s.isolation == "in-process":
                library = NativeLibrary(str(s.library), self.variant, declarations(),
                                        api_version())
            else:
                library = HostedLibrary(str(s.library), self.variant, declarations(),
                                        api_version(), call_timeout_s=s.call_timeout_s,
                                        start_timeout_s=s.start_timeout_s)
            library.open(s.config, s.max_samples)
            try:
                return library, describe(library)
            except BaseException:
                library.close()
                raise

        try:
            self.library, described = await self._run(
                start, "open", s.start_timeout_s + self.call_timeout_s)
        except BaseException:
            self._release()
            raise
        return described

    async def call(self, what: str, fn: Callable[[Library], T]) -> T:
        """``fn(library)`` on the worker thread, within the call timeout."""
        library = self.library
        if library is None:
            raise DeviceClosed(self.name, "not open")
        return await self._run(lambda: fn(library), what)

    async def close(self, first: Callable[[Library], None] | None = None) -> None:
        """Run ``first`` (switching outputs off), close the device and end its host process;
        failures are logged, since closing is the way out of them. Idempotent."""
        library, self.library = self.library, None
        if library is not None:
            def close() -> None:
                try:
                    if first is not None:
                        first(library)
                finally:
                    library.close()

            try:
                await self._run(close, "close")
            except DeviceError as err:
                log.error("%s", err)
        self._release()

    async def _run(self, fn: Callable[[], T], what: str, timeout: float | None = None) -> T:
        worker = self._worker
        if worker is None:
            raise DeviceClosed(self.name, "not open")
        try:
            return await worker.run(fn, timeout or self.call_timeout_s, what)
        except NativeError as err:
            raise ERRORS.get(err.status, DeviceError)(self.name, err.message) from None

    def _release(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

"""One open device of a vendor library: loaded in a host process (:class:`HostedLibrary`) or
in-process (:class:`InProcessLibrary`, on a worker thread of its own), every call with its
timeout, and the library's failures as cellbench's typed errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cellbench_native.hosted import HostedLibrary
from cellbench_native.library import (
    BAD_REPLY,
    LOAD,
    ChannelSpec,
    NativeError,
    NativeLibrary,
    SignalSpec,
    StepSpec,
    Variant,
)
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


class InProcessLibrary:
    """A :class:`NativeLibrary` loaded into the station's own process, called on one worker
    thread (vendor libraries are rarely thread-safe), each call within ``call_timeout_s``.

    The risk: a crash in vendor code ends the station, and a call that hangs keeps its thread
    (later calls queue behind it and time out)."""

    def __init__(self, settings: NativeSettings, variant: Variant, name: str) -> None:
        self.settings = settings
        self.variant = variant
        self._worker = DeviceWorker(name, settings.call_timeout_s)
        self._library: NativeLibrary | None = None

    async def open(self) -> None:
        """Load the library and open the device (within ``start_timeout_s``)."""
        s = self.settings

        def load() -> NativeLibrary:
            library = NativeLibrary(str(s.library), self.variant, declarations(), api_version())
            library.open(s.config, s.max_samples)
            return library

        try:
            self._library = await self._worker.run(load, s.start_timeout_s, "cb_open")
        except BaseException:
            self._worker.close()
            raise

    async def close(self, channels_off: int = 0) -> None:
        """Switch outputs ``0 .. channels_off - 1`` off (each one, whatever the others did)
        and close the device, raising the first failure after that; the worker thread ends
        once no call is left on it."""
        library, self._library = self._library, None
        try:
            if library is not None:
                def close() -> None:
                    first: NativeError | None = None
                    for channel in range(channels_off):
                        try:
                            library.output_off(channel)
                        except NativeError as err:
                            first = first or err
                    try:
                        library.close()
                    except NativeError as err:
                        first = first or err
                    if first is not None:
                        raise first

                timeout = (channels_off + 1) * self.settings.call_timeout_s
                await self._worker.run(close, timeout, "close")
        finally:
            self._worker.close()

    async def signals(self) -> list[SignalSpec]:
        """Every signal, described by the library."""
        return await self._call(lambda library: library.signals(), "cb_describe_signal")

    async def device_info(self) -> dict[str, str]:
        """What the device says about itself, by name."""
        return await self._call(lambda library: library.device_info(), "cb_describe_device")

    async def channels(self) -> list[ChannelSpec]:
        """Every channel with its ranges, described by the library."""
        return await self._call(lambda library: library.channels(), "cb_describe_channel")

    async def sample_layout(self) -> tuple[int, dict[str, int]]:
        """``cb_sample``'s size and field offsets."""
        return await self._call(lambda library: library.sample_layout(), "layout")

    async def read(self) -> bytes:
        """``cb_read``: every signal's value as native doubles."""
        return await self._call(lambda library: library.read(), "cb_read")

    async def write(self, index: int, value: float) -> None:
        """``cb_write(index, value)``."""
        await self._call(lambda library: library.write(index, value), "cb_write")

    async def apply(self, channel: int, step: StepSpec) -> None:
        """``cb_apply(channel, step)``."""
        await self._call(lambda library: library.apply(channel, step), "cb_apply")

    async def output_off(self, channel: int) -> None:
        """``cb_output_off(channel)``."""
        await self._call(lambda library: library.output_off(channel), "cb_output_off")

    async def measure(self) -> bytes:
        """``cb_measure``: the samples as native ``cb_sample`` structs."""
        return await self._call(lambda library: library.measure(), "cb_measure")

    async def _call(self, fn: Callable[[NativeLibrary], T], what: str) -> T:
        library = self._library
        if library is None:
            raise NativeError("CB_DISCONNECTED", "the device is not open")
        return await self._worker.run(lambda: fn(library), self.settings.call_timeout_s, what)


Library = InProcessLibrary | HostedLibrary


class Handle:
    """A device of the library ``settings`` name, opened as ``variant``, isolated as the
    settings say; ``name`` is the device's name in errors."""

    def __init__(self, settings: NativeSettings, variant: Variant, name: str) -> None:
        self.settings = settings
        self.variant = variant
        self.name = name
        self.library: Library | None = None

    async def open(self, describe: Callable[[Library], Awaitable[T]]) -> T:
        """Load the library, open the device and return ``await describe(library)``; on any
        failure nothing stays loaded or running."""
        s = self.settings
        library: Library
        if s.isolation == "in-process":
            library = InProcessLibrary(s, self.variant, self.name)
        else:
            library = HostedLibrary(str(s.library), self.variant, declarations(), api_version(),
                                    config=s.config, max_samples=s.max_samples,
                                    call_timeout_s=s.call_timeout_s,
                                    start_timeout_s=s.start_timeout_s,
                                    restart_delay_s=s.restart_delay_s)
        try:
            await self._typed(library.open())
            described = await self._typed(describe(library))
        except BaseException:
            await library.close()  # also after a failed open: it releases what is left
            raise
        self.library = library
        return described

    async def call(self, fn: Callable[[Library], Awaitable[T]]) -> T:
        """``await fn(library)``, its failure as a typed error."""
        library = self.library
        if library is None:
            raise DeviceClosed(self.name, "not open")
        return await self._typed(fn(library))

    async def close(self, channels_off: int = 0) -> None:
        """Switch outputs ``0 .. channels_off - 1`` off, close the device and end its host
        process or worker thread; failures are logged, since closing is the way out of them.
        Idempotent."""
        library, self.library = self.library, None
        if library is not None:
            try:
                await self._typed(library.close(channels_off))
            except DeviceError as err:
                log.error("closing %s", err)

    async def _typed(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except NativeError as err:
            raise ERRORS.get(err.status, DeviceError)(self.name, err.message) from None

"""A vendor library's OSI device: its signals, read and written through the library."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

from cellbench_native.handle import Handle, Library
from cellbench_native.library import SignalSpec
from cellbench_native.settings import NativeSettings
from cellbench_sdk import (
    BadReply,
    Clock,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
    WhileOpen,
)


class NativeDevice(OsiDevice):
    """The signals ``cb_describe_signal`` lists, read with ``cb_read`` (NaN for a failed sensor)
    and written with ``cb_write``; ``info`` is what ``cb_describe_device`` said at open."""

    def __init__(self, settings: NativeSettings) -> None:
        self.settings = settings
        self.name = settings.device_name
        self.handle = Handle(settings, "osi", self.name)
        self._clock = WhileOpen[Clock](self)
        self._signals: tuple[SignalInfo, ...] = ()
        self._index: dict[str, int] = {}
        self._values = struct.Struct("")
        self._info: dict[str, str] = {}

    @property
    def signals(self) -> Sequence[SignalInfo]:
        self._clock.get()  # refuses unless open: the library describes them when it opens
        return self._signals

    @property
    def info(self) -> Mapping[str, str]:
        return self._info

    async def open(self, clock: Clock) -> None:
        async def describe(library: Library) -> tuple[list[SignalSpec], dict[str, str]]:
            return await library.signals(), await library.device_info()

        specs, self._info = await self.handle.open(describe)
        self._signals = tuple(SignalInfo(s.name, s.unit, s.writable) for s in specs)
        self._index = {s.name: n for n, s in enumerate(specs)}
        self._values = struct.Struct(f"={len(specs)}d")
        self._clock.set(clock)

    async def close(self) -> None:
        self._clock.clear()
        await self.handle.close()

    async def read(self) -> Mapping[str, Reading]:
        clock = self._clock.get()
        raw = await self.handle.call(lambda library: library.read())
        now = clock.now()
        if len(raw) != self._values.size:
            raise BadReply(self.name, f"cb_read gave {len(raw)} bytes, not "
                           f"{len(self._signals)} doubles")
        values = self._values.unpack(raw)
        for info, value in zip(self._signals, values, strict=True):
            if math.isinf(value):
                raise BadReply(self.name, f"cb_read gave signal {info.name!r} the value "
                               f"{value!r}; a failed sensor reads NaN")
        return {info.name: Reading(value, now)
                for info, value in zip(self._signals, values, strict=True)}

    async def write(self, signal: str, value: float) -> None:
        self._clock.get()
        index = self._index.get(signal)
        if index is None:
            raise OutOfRange(self.name, f"no signal {signal!r} (signals: "
                             f"{', '.join(self._index)})")
        if not self._signals[index].writable:
            raise NotSupported(self.name, f"signal {signal!r} is read-only")
        if not math.isfinite(value):
            raise OutOfRange(self.name, f"{signal} must be a finite number, not {value!r}")
        await self.handle.call(lambda library: library.write(index, float(value)))

"""The interface check, and the small serving station it runs an interface against."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cellbench_core.plugins import PluginManager
from cellbench_core.service.station_service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_hal import (
    ChannelDriver,
    ChannelInfo,
    Clock,
    DeviceConnectionError,
    NotSupported,
    OutOfRange,
    RealClock,
    SampleBatch,
    Step,
    StepMode,
)
from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_sdk.control import Interface, StationControl
from cellbench_sdk.storage import open_database
from cellbench_sdk.testing._checker import raised, violation

#: The name of the kit's channel driver in the station's file.
DRIVER = "cellbench-kit-memory"


class _KitChannelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=2, ge=1)


class KitChannels(ChannelDriver):
    """Channels with a 3.7 V cell each that only rest or hold a constant current: enough for a
    station to serve and run tests, so that an interface has something to show and control."""

    virtual_time_ok = True

    def __init__(self, settings: _KitChannelSettings) -> None:
        self.name = DRIVER
        self._current = np.zeros(settings.count)
        self._clock: Clock | None = None

    @property
    def channels(self) -> Sequence[ChannelInfo]:
        return [ChannelInfo(f"kit/{c}", 0.0, 5.0, 10.0) for c in range(len(self._current))]

    async def open(self, clock: Clock) -> None:
        self._clock = clock

    async def close(self) -> None:
        self._clock = None
        self._current[:] = 0.0

    def _check(self, channel: int) -> None:
        if self._clock is None:
            raise DeviceConnectionError(self.name, "not open")
        if not 0 <= channel < len(self._current):
            raise OutOfRange(self.name, f"no channel {channel}")

    async def apply(self, channel: int, step: Step) -> None:
        self._check(channel)
        if step.mode not in (StepMode.REST, StepMode.CC):
            raise NotSupported(self.name, f"no {step.mode.value} mode")
        if abs(step.current_a or 0.0) > 10.0:
            raise OutOfRange(self.name, f"{step.current_a} A is beyond ±10 A")
        self._current[channel] = step.current_a or 0.0

    async def output_off(self, channel: int) -> None:
        await self.apply(channel, Step(StepMode.REST))

    async def measure(self) -> SampleBatch:
        if self._clock is None:
            raise DeviceConnectionError(self.name, "not open")
        n = len(self._current)
        return SampleBatch(np.arange(n, dtype=np.int64), np.full(n, self._clock.now()),
                           np.full(n, 3.7), self._current.copy(), np.full(n, 25.0))


@hookimpl
def cellbench_channel_drivers() -> list[Descriptor]:
    """The kit's channels, for the station :func:`station_control` serves."""
    return [Descriptor(Kind.CHANNEL_DRIVER, DRIVER, f"{__name__}:KitChannels",
                       "the conformance kit's resting cells", _KitChannelSettings)]


@asynccontextmanager
async def station_control(channels: int = 2) -> AsyncIterator[StationControl]:
    """Serve a station of ``channels`` channels of resting cells (a SQLite database in a
    temporary folder, the real clock) and yield its control API; shut it down on leaving."""
    with tempfile.TemporaryDirectory(prefix="cellbench-kit-") as folder:
        db = open_database(f"sqlite:///{Path(folder) / 'station.db'}")
        try:
            manager = PluginManager()
            manager.register("cellbench-kit", sys.modules[__name__])
            config = station_from_dict({
                "station": {"name": "kit", "database": db.url, "sample_period": "1 s"},
                "channels": [{"driver": DRIVER, "settings": {"count": channels}}]})
            station = Station(config, manager, base_dir=Path(folder))
            service = StationService(station, db, RealClock(), manager.hook, version="kit")
            serving = asyncio.create_task(service.serve())
            ready = asyncio.create_task(service.ready.wait())
            await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if serving.done():
                await serving  # raises what stopped the station
                raise RuntimeError("the kit's station stopped before it was ready")
            assert service.control is not None
            try:
                yield service.control
            finally:
                service.shutdown()
                await serving
        finally:
            db.close()


Exercise = Callable[[object, StationControl], Awaitable[None]]


async def check_interface(interface: object, control: StationControl, *,
                          exercise: Exercise | None = None, timeout_s: float = 5.0) -> None:
    """Check ``interface`` against the interface contract with the station ``control``.

    ``stop()`` is safe before ``start()``; ``start(control)`` returns, within ``timeout_s``, a
    non-empty text saying what it serves (for the station's ready line); ``exercise(interface,
    control)``, if given, then talks to it; ``stop()`` returns within ``timeout_s`` and may be
    called twice.
    """
    subject = f"interface {type(interface).__name__}"
    if not all(callable(getattr(interface, m, None)) for m in ("start", "stop")):
        raise violation(subject, "the factory", "an interface has async start(control) and "
                        "async stop()", f"built {interface!r}")

    async def call(what: str, work: Awaitable[object], rule: str) -> object:
        try:
            async with asyncio.timeout(timeout_s):
                return await work
        except TimeoutError:
            raise violation(subject, what, f"{rule}, within its timeout",
                            f"no answer within {timeout_s:g} s") from None
        except Exception as err:
            raise violation(subject, what, rule, raised(err)) from err

    served_by: Interface = interface  # type: ignore[assignment]
    stopping = "stop() is idempotent and safe before start()"
    await call("stop() before start()", served_by.stop(), stopping)
    served = await call("start(control)", served_by.start(control),
                        "start(control) starts serving and returns what it serves")
    try:
        if not (isinstance(served, str) and served.strip()):
            raise violation(subject, "start(control)", "start() returns a non-empty text "
                            "saying what it serves (e.g. 'rci on 127.0.0.1:5025')",
                            f"returned {served!r}")
        if exercise is not None:
            await exercise(interface, control)
    finally:
        await call("stop()", served_by.stop(), "stop() stops serving")
    await call("a second stop()", served_by.stop(), stopping)

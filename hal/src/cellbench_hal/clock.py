"""Clocks: the runner asks a clock for the time and waits on it.

Real hardware runs on :class:`RealClock`. Simulated stations may run on a :class:`VirtualClock`,
either paced (N times faster than the wall) or as fast as the CPU allows, so that a week-long
cycle test replays in seconds. Times are seconds on a monotonic scale; ``unix()`` maps them to
wall-clock timestamps for storage.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod


class Clock(ABC):
    """Monotonic time in seconds, plus the matching Unix timestamp."""

    #: True when time does not follow the wall (only simulators may run on such a clock).
    virtual: bool = False

    def __init__(self) -> None:
        self._t0 = self.now()
        self._unix0 = time.time()

    @abstractmethod
    def now(self) -> float:
        """Current time in seconds on this clock's monotonic scale."""

    @abstractmethod
    async def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t`` (at once if it already is)."""

    def unix(self, t: float) -> float:
        """Unix timestamp (s) of clock time ``t``."""
        return self._unix0 + (t - self._t0)

    def continue_after(self, unix_s: float) -> None:
        """Make every later time stamp come after ``unix_s``, the last one a previous run of
        this station stored: a virtual clock, whose time runs ahead of the wall, (or a wall
        clock set back) moves its time stamps on, so a resumed test's never go backwards."""
        self._unix0 += max(0.0, unix_s - self.unix(self.now()))


class RealClock(Clock):
    """The wall clock (``time.monotonic``)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock(Clock):
    """Simulated time: ``speed`` times faster than the wall, or as fast as possible (``None``)."""

    virtual = True

    def __init__(self, speed: float | None = None) -> None:
        if speed is not None and not (speed > 0 and speed != float("inf")):
            raise ValueError(f"clock speed must be a positive finite number, not {speed!r}")
        self.speed = speed
        self._virtual_now = 0.0
        self._wall0 = time.monotonic()
        super().__init__()

    def now(self) -> float:
        if self.speed is None:
            return self._virtual_now
        return (time.monotonic() - self._wall0) * self.speed

    async def sleep_until(self, t: float) -> None:
        if self.speed is None:
            self._virtual_now = max(self._virtual_now, t)
            await asyncio.sleep(0)  # let other tasks run even when time does not wait
            return
        delay = (t - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

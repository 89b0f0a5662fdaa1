"""What emulators of instruments and controllers share: model time that runs ``speed`` times
faster than the wall clock, and the first-order approach of a temperature (or humidity) to its
setpoint under a ramp-rate limit, the thermal model every climate chamber emulator uses.

Emulators answer from a model that advances whenever a request comes in: they ask
:class:`ModelTime` how many model seconds passed and move their state on by :func:`approach`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["ModelTime", "approach"]


def approach(value: float, target: float, dt: float, tau: float,
             max_rate: float = math.inf) -> float:
    """``value`` after ``dt`` seconds of dx/dt = (target - x)/tau with |dx/dt| at most
    ``max_rate`` per second, exactly: while the gap is wider than ``max_rate * tau`` the rate
    limit holds (a straight ramp), the rest of ``dt`` is the exponential approach."""
    if dt <= 0.0:
        return value
    gap = value - target
    excess = abs(gap) - max_rate * tau
    ramp_s = 0.0
    if excess > 0:
        ramp_s = min(dt, excess / max_rate)
        gap -= math.copysign(max_rate * ramp_s, gap)
    return target + gap * math.exp(-(dt - ramp_s) / tau)


class ModelTime:
    """Model seconds that pass ``speed`` times faster than ``clock`` (wall seconds)."""

    def __init__(self, speed: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        self.speed = speed
        self._clock = clock
        self._wall = clock()

    def restart(self) -> None:
        """Count from now (an emulator that starts serving)."""
        self._wall = self._clock()

    def elapsed(self) -> float:
        """Model seconds since the last call (or since it was made or restarted)."""
        now = self._clock()
        dt = (now - self._wall) * self.speed
        self._wall = now
        return max(dt, 0.0)

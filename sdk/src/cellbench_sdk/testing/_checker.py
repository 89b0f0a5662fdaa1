"""The machinery every check shares: calls within a timeout, violations that state the rule and
what the code under test did, and the open/close part of every device's lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import TypeVar

from cellbench_hal import (
    Clock,
    Device,
    DeviceConnectionError,
    DeviceError,
    RealClock,
    VirtualClock,
)

T = TypeVar("T")
Call = Callable[[], Awaitable[object]]

NOT_OPEN = "calls on a device that is not open (before open() or after close()) raise " \
           "DeviceConnectionError"


class Violation(AssertionError):
    """A check failed (kept apart from AssertionErrors that the device under test raises)."""


def violation(subject: str, what: str, rule: str, did: str) -> Violation:
    return Violation(f"{subject}: {what}\n  contract: {rule}\n  got:      {did}")


def raised(err: BaseException) -> str:
    return f"raised {type(err).__name__}: {err}"


class Checker:
    """Calls one device within a timeout and turns deviations into :class:`AssertionError`."""

    def __init__(self, device: Device, timeout_s: float) -> None:
        self.device = device
        self.subject = f"{type(device).__name__} {getattr(device, 'name', '?')!r}"
        self.timeout_s = timeout_s

    def fail(self, what: str, rule: str, did: str) -> Violation:
        return violation(self.subject, what, rule, did)

    async def run(self, what: str, call: Awaitable[T]) -> T:
        """Await ``call``; a call that neither returns nor raises in time is a violation."""
        try:
            async with asyncio.timeout(self.timeout_s) as scope:
                return await call
        except TimeoutError:
            if scope.expired():
                raise self.fail(what, "every call returns or raises within its timeout",
                                f"no answer within {self.timeout_s:g} s") from None
            raise

    async def ok(self, what: str, call: Awaitable[T], rule: str = "") -> T:
        """Await a call that the contract says succeeds."""
        try:
            return await self.run(what, call)
        except Violation:
            raise
        except Exception as err:
            raise self.fail(what, rule or "this call succeeds on a working device",
                            raised(err)) from err

    async def refused(self, what: str, call: Awaitable[object],
                      error: type[DeviceError] | tuple[type[DeviceError], ...], rule: str) -> None:
        """Await a call that the contract says raises ``error``."""
        try:
            await self.run(what, call)
        except Violation:
            raise
        except error:
            return
        except Exception as err:
            raise self.fail(what, rule, raised(err)) from err
        raise self.fail(what, rule, "returned without an error")


def clock_for(device: Device, clock: Clock | None) -> Clock:
    if clock is None:
        return VirtualClock() if device.virtual_time_ok else RealClock()
    if clock.virtual and not device.virtual_time_ok:
        raise ValueError(f"{type(device).__name__} is real hardware (virtual_time_ok is False): "
                         "check it on a RealClock")
    return clock


async def open_checked(check: Checker, clock: Clock, not_open: Mapping[str, Call]) -> None:
    """Close before open, calls before open, then open."""
    await check.ok("close() before open()", check.device.close(),
                   "close() is idempotent and safe on a device never opened (or whose open failed)")
    for what, call in not_open.items():
        await check.refused(f"{what} before open()", call(), DeviceConnectionError, NOT_OPEN)
    await check.ok("open()", check.device.open(clock))


async def close_checked(check: Checker, not_open: Mapping[str, Call]) -> None:
    """Close twice, then calls after close."""
    await check.ok("close()", check.device.close())
    await check.ok("a second close()", check.device.close(), "close() is idempotent")
    for what, call in not_open.items():
        await check.refused(f"{what} after close()", call(), DeviceConnectionError, NOT_OPEN)


async def closing_on_error(device: Device, body: Awaitable[T]) -> T:
    """Await ``body``; if it fails, close the device (best effort) before re-raising."""
    try:
        return await body
    except BaseException:
        with suppress(Exception):
            await device.close()
        raise


async def settle(clock: Clock, seconds: float) -> None:
    await clock.sleep_until(clock.now() + seconds)


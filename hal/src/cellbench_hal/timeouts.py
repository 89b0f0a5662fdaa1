"""Every device call has a timeout; blocking libraries run on one worker thread per handle."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from cellbench_hal.errors import DeviceTimeout

T = TypeVar("T")
P = ParamSpec("P")


async def call_with_timeout(awaitable: Awaitable[T], timeout: float, device: str, what: str) -> T:
    """Await ``awaitable``; raise :class:`DeviceTimeout` naming ``device`` and ``what`` if late."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        raise DeviceTimeout(device, f"{what} did not answer within {timeout:g} s") from None


class DeviceWorker:
    """One thread for one device handle.

    Vendor libraries (pyusb, smbus2, cffi handles, serial ports) are often not thread-safe: every
    call for one handle goes through the same single thread, in order, while the event loop stays
    free. A call that does not finish in time raises :class:`DeviceTimeout`; the thread is left to
    finish it, and later calls queue behind it.
    """

    def __init__(self, device: str, timeout: float) -> None:
        self.device = device
        self.timeout = timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"cellbench-{device}"
        )

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the worker thread, within the worker's timeout."""
        name = getattr(fn, "__name__", "call")
        return await self.run(functools.partial(fn, *args, **kwargs), self.timeout, name)

    async def run(self, fn: Callable[[], T], timeout: float, what: str) -> T:
        """Run ``fn()`` on the worker thread within ``timeout`` seconds (counted from now, so
        the wait behind earlier calls counts); a :class:`DeviceTimeout` names ``what``."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn)
        return await call_with_timeout(future, timeout, self.device, what)

    def close(self) -> None:
        """Stop accepting calls; idempotent. Calls already running finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)

"""LineTransport with a Link of the test's own: a new transport needs only _open_link."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cellbench_hal import DeviceTimeout, LineTransport, Link


class HangingLink:
    """A link whose receive ignores its timeout, as a broken vendor library might."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[bytes] = []

    def send(self, data: bytes, timeout: float) -> None:
        self.sent.append(data)

    def receive(self, size: int, timeout: float) -> bytes:
        self.release.wait()
        return b"ok\n"

    def close(self) -> None:
        self.release.set()


class Hanging(LineTransport):
    def __init__(self) -> None:
        super().__init__(name="hanging", open_timeout=1.0, timeout=0.1)
        self.link = HangingLink()

    def _open_link(self) -> Link:
        return self.link


def test_a_link_that_ignores_its_timeout_still_times_out() -> None:
    async def run() -> None:
        io = Hanging()
        await io.open()
        # The transport's own timeout must answer (DeviceTimeout); wait_for only keeps a broken
        # one from hanging the suite (it would raise TimeoutError instead).
        with pytest.raises(DeviceTimeout, match=r"^hanging: query 'A' did not answer within"):
            await asyncio.wait_for(io.query("A"), 60)
        await io.close()  # releases the hung receive, then closes

    asyncio.run(run())

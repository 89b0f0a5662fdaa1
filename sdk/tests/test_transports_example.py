"""The example driver of docs/transports.md, extracted from the page, against a real loopback
instrument and through the SDK's OSI-device contract check."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cellbench_sdk import BadReply, DeviceClosed, DeviceTimeout, RealClock
from cellbench_sdk.testing import check_failed_open, check_osi_device

PAGE = Path(__file__).resolve().parents[2] / "docs" / "transports.md"
TEXT = PAGE.read_text(encoding="utf-8")
SOURCE = re.search(r"```python\n# thermometer\.py\n(.*?)```", TEXT, re.DOTALL)


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    assert SOURCE is not None, "docs/transports.md has no '# thermometer.py' block"
    module = ModuleType("thermometer")
    # Blank lines in front keep the page's line numbers in tracebacks.
    padded = "\n" * TEXT.count("\n", 0, SOURCE.start(1)) + SOURCE[1]
    exec(compile(padded, str(PAGE), "exec"), module.__dict__)
    yield module


async def instrument(replies: dict[bytes, bytes]) -> asyncio.Server:
    """An instrument on loopback that answers each command line from ``replies``."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(replies.get(line, b""))
            await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def test_the_example_reads_and_passes_the_contract_check(example: ModuleType) -> None:
    async def run() -> None:
        async with await instrument({b"TEMP?\n": b"23.5\r\n"}) as server:
            port = server.sockets[0].getsockname()[1]
            device = example.Thermometer("127.0.0.1", port)
            await check_osi_device(device)
            with pytest.raises(DeviceClosed, match=f"thermometer@127.0.0.1:{port}: not open"):
                await device.read()

    asyncio.run(run())


def test_the_example_turns_bad_and_missing_replies_into_device_errors(
        example: ModuleType) -> None:
    async def read(replies: dict[bytes, bytes]) -> None:
        async with await instrument(replies) as server:
            device = example.Thermometer("127.0.0.1", server.sockets[0].getsockname()[1])
            device.io.timeout = 0.2
            await device.open(RealClock())
            try:
                await device.read()
            finally:
                await device.close()

    with pytest.raises(BadReply, match="TEMP\\? answered 'ERR -113'"):
        asyncio.run(read({b"TEMP?\n": b"ERR -113\r\n"}))
    with pytest.raises(DeviceTimeout, match="no reply within 0.2 s"):
        asyncio.run(read({}))


def test_the_example_fails_to_open_an_unreachable_instrument(example: ModuleType) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        asyncio.run(check_failed_open(example.Thermometer("127.0.0.1",
                                                          unused.getsockname()[1])))

"""Settings refused where they enter, and the ``serve`` coroutine the command line runs."""

import asyncio

import pytest
from pydantic import ValidationError

from cellbench_espec.emulator import serve
from cellbench_espec.settings import EspecSettings
from cellbench_sdk.testing import free_port


@pytest.mark.parametrize(("settings", "problem"), [
    ({}, "exactly one of address"),
    ({"address": "10.0.0.8:10001", "port": "/dev/ttyUSB0"}, "exactly one of address"),
    ({"address": "10.0.0.8"}, "pattern"),
    ({"port": "/dev/ttyUSB0", "min_c": 50, "max_c": 20}, "min_c 50 must be below max_c 20"),
    ({"port": "/dev/ttyUSB0", "max_c": float("nan")}, "finite"),
    ({"port": "/dev/ttyUSB0", "baud": 9600}, "Extra inputs"),
])
def test_bad_settings_are_refused(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        EspecSettings.model_validate(settings)


@pytest.mark.parametrize(("settings", "url"), [
    ({"address": "10.0.0.8:10001"}, "tcp://10.0.0.8:10001"),
    ({"port": "/dev/ttyUSB0", "baudrate": 19200}, "serial:///dev/ttyUSB0?baudrate=19200"),
    ({"port": "COM3"}, "serial://COM3?baudrate=9600"),
])
def test_the_transport_url(settings: dict[str, object], url: str) -> None:
    assert EspecSettings.model_validate(settings).url == url


def test_serve_answers_until_cancelled() -> None:
    async def run() -> bytes:
        port = free_port()
        task = asyncio.create_task(serve("127.0.0.1", port, humidity=True))
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.02)
        writer.write(b"MON?\r\n")
        reply = await reader.readline()
        writer.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return reply

    assert asyncio.run(run()) == b"23.0,45.0,STANDBY,0\r\n"

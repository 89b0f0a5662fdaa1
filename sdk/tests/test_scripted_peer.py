"""ScriptedPeer holds a scripted conversation with a tiny line client and reports deviations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from cellbench_sdk.testing import HANG_UP, HangUp, ScriptedPeer

Conversation = Callable[[ScriptedPeer], Awaitable[object]]


class LineClient:
    """The code under test: sends a line, reads the answer line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, peer: ScriptedPeer) -> LineClient:
        return cls(*await asyncio.open_connection(peer.host, peer.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def query(self, line: bytes) -> bytes:
        await self.send(line)
        return await self.reader.readline()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def converse(script: Sequence[tuple[bytes, bytes | HangUp]],
             conversation: Conversation) -> ScriptedPeer:
    async def run() -> ScriptedPeer:
        async with ScriptedPeer(script) as peer:
            await conversation(peer)
        return peer

    return asyncio.run(run())


SCRIPT = [
    (b"", b"READY\n"),  # the instrument greets first
    (b"*IDN?\n", b"ACME,BC-4,1234,1.0\n"),
    (b"VOLT 4.2\n", b""),  # a setting, no answer
    (b"MEAS?\n", b"4.19,1.5\n"),
]


def test_a_conversation_that_follows_the_script_passes() -> None:
    answers: list[bytes] = []

    async def conversation(peer: ScriptedPeer) -> None:
        client = await LineClient.connect(peer)
        answers.append(await client.reader.readline())
        answers.append(await client.query(b"*IDN?\n"))
        await client.send(b"VOLT ")  # bytes may arrive in any pieces
        await client.send(b"4.2\nMEAS?\n")
        answers.append(await client.reader.readline())
        await client.close()

    peer = converse(SCRIPT, conversation)
    assert answers == [b"READY\n", b"ACME,BC-4,1234,1.0\n", b"4.19,1.5\n"]
    assert peer.step == len(SCRIPT)


def test_wrong_bytes_name_the_step_and_both_byte_strings() -> None:
    async def conversation(peer: ScriptedPeer) -> None:
        client = await LineClient.connect(peer)
        await client.reader.readline()
        await client.query(b"*IDN?\n")
        assert await client.query(b"VOLT 4.20\n") == b""  # the peer hangs up at once

    with pytest.raises(AssertionError, match=r"^ScriptedPeer script\[2\]: expected "
                                             r"b'VOLT 4.2\\n', received b'VOLT 4.20\\n'$"):
        converse(SCRIPT, conversation)


def test_an_unfinished_script_names_the_missing_step_and_what_arrived() -> None:
    async def conversation(peer: ScriptedPeer) -> None:
        client = await LineClient.connect(peer)
        await client.send(b"*ID")

    with pytest.raises(AssertionError, match=r"^ScriptedPeer script\[1\] unfinished: expected "
                                             r"b'\*IDN\?\\n', received b'\*ID'$"):
        converse(SCRIPT[:2], conversation)


def test_bytes_after_the_end_of_the_script_fail() -> None:
    async def conversation(peer: ScriptedPeer) -> None:
        client = await LineClient.connect(peer)
        await client.query(b"*IDN?\n")
        await client.send(b"*RST\n")

    with pytest.raises(AssertionError, match=r"received b'\*RST\\n' after the end of the script "
                                             r"\(1 steps\)"):
        converse(SCRIPT[1:2], conversation)


def test_the_deviation_is_reported_with_the_client_error_as_its_cause() -> None:
    async def conversation(peer: ScriptedPeer) -> None:
        client = await LineClient.connect(peer)
        if not await client.query(b"*IDN\n"):
            raise ConnectionError("instrument closed the connection")

    with pytest.raises(AssertionError, match=r"script\[0\]: expected b'\*IDN\?\\n'") as failure:
        converse(SCRIPT[1:], conversation)
    assert isinstance(failure.value.__cause__, ConnectionError)


def test_a_client_error_without_deviation_propagates() -> None:
    async def conversation(peer: ScriptedPeer) -> None:
        client = await LineClient.connect(peer)
        await client.query(b"*IDN?\n")
        raise RuntimeError("driver bug")

    with pytest.raises(RuntimeError, match="driver bug"):
        converse(SCRIPT[1:2], conversation)


def test_hang_up_closes_the_connection_and_a_reconnect_continues_the_script() -> None:
    async def conversation(peer: ScriptedPeer) -> None:
        first = await LineClient.connect(peer)
        assert await first.query(b"MEAS?\n") == b""
        await first.close()
        second = await LineClient.connect(peer)
        assert await second.query(b"MEAS?\n") == b"4.19,1.5\n"
        await second.close()

    converse([(b"MEAS?\n", HANG_UP), (b"MEAS?\n", b"4.19,1.5\n")], conversation)


def test_a_second_simultaneous_connection_fails() -> None:
    async def conversation(peer: ScriptedPeer) -> None:
        first = await LineClient.connect(peer)
        await first.query(b"*IDN?\n")
        second = await LineClient.connect(peer)
        assert await second.reader.read() == b""

    with pytest.raises(AssertionError, match=r"a second connection arrived while the first was "
                                             r"open \(at script\[1\]\)"):
        converse(SCRIPT[1:3], conversation)


@pytest.mark.parametrize("script", [
    [("*IDN?\n", b"x\n")],
    [(b"*IDN?\n", None)],
    [b"*IDN?\n"],
])
def test_a_malformed_script_is_refused(script: list[object]) -> None:
    with pytest.raises(TypeError, match=r"script\[0\] must be \(request bytes, reply bytes or "
                                        "HANG_UP\\), not "):
        ScriptedPeer(script)  # type: ignore[arg-type]

"""expected_protocol: a driver's exact bytes over loopback TCP and in memory, and a report that
shows the first difference after the pairs that went well."""

from __future__ import annotations

import asyncio
import socket

import pytest

from cellbench_sdk.testing import HANG_UP, MemoryStream, expected_protocol

PAIRS = [
    (b"", b"READY\n"),  # the instrument greets first
    (b"INFO?\n", b"2,0,5,10\n"),
    (b"CC 1 -2.5\n", b"OK\n"),
    (b"MEAS?\n", b"3.71,0,25.5;3.93,-2.5,25.7\n"),
]


def query(stream: MemoryStream, line: bytes) -> bytes:
    """The driver's transport under test: write a line, read the answer line."""
    stream.write(line)
    return stream.read_until(b"\n")


def test_a_conversation_in_memory_that_follows_the_pairs_passes() -> None:
    with expected_protocol(PAIRS, transport="memory") as instrument:
        stream = instrument.stream
        assert stream.read_until() == b"READY\n"
        assert query(stream, b"INFO?\n") == b"2,0,5,10\n"
        stream.write(b"CC 1 ")  # bytes may arrive in any pieces
        stream.write(b"-2.5\nMEAS?\n")
        assert stream.in_waiting == len(b"OK\n3.71,0,25.5;3.93,-2.5,25.7\n")
        assert stream.read(3) == b"OK\n"
        assert stream.read(-1) == b"3.71,0,25.5;3.93,-2.5,25.7\n"


def test_the_first_difference_is_shown_after_the_pairs_that_went_well() -> None:
    with pytest.raises(AssertionError) as failure, \
            expected_protocol(PAIRS, transport="memory") as instrument:
        stream = instrument.stream
        stream.read_until()
        query(stream, b"INFO?\n")
        stream.write(b"CC 1 2.5\n")
        with pytest.raises(BrokenPipeError, match="a deviation"):
            stream.write(b"MEAS?\n")
        assert stream.read_until() == b""  # the instrument hung up
    assert str(failure.value) == (
        "expected_protocol: deviated at pair 2 of 4\n"
        "  pair 0: sent b'', reply b'READY\\n'\n"
        "  pair 1: sent b'INFO?\\n', reply b'2,0,5,10\\n'\n"
        "  pair 2: expected b'CC 1 -2.5\\n'\n"
        "          received b'CC 1 2.5\\n'\n"
        "          (the first difference is at byte 5)")


def test_an_unfinished_conversation_fails() -> None:
    with pytest.raises(AssertionError, match=r"stopped at pair 1 of 4(.|\n)*"
                       r"pair 1: expected b'INFO\?\\n'\n +received b'INF'$"), \
            expected_protocol(PAIRS, transport="memory") as instrument:
        instrument.stream.write(b"INF")


def test_a_reply_that_never_comes_is_a_timeout_in_memory() -> None:
    with expected_protocol([(b"OUT ON\n", b""), (b"MEAS?\n", b"1\n")],
                           transport="memory") as instrument:
        instrument.stream.write(b"OUT ON\n")
        with pytest.raises(TimeoutError, match=r"nothing more until it receives b'MEAS\?\\n'"):
            instrument.stream.read_until()
        assert query(instrument.stream, b"MEAS?\n") == b"1\n"
        with pytest.raises(TimeoutError, match="the script is finished"):
            instrument.stream.read()


def test_bytes_after_the_last_pair_fail() -> None:
    with pytest.raises(AssertionError, match=r"then: +received b'\*RST\\n' after the last pair"), \
            expected_protocol(PAIRS[1:2], transport="memory") as instrument:
        query(instrument.stream, b"INFO?\n")
        instrument.stream.write(b"*RST\n")


def test_hang_up_closes_the_stream_until_the_driver_reconnects() -> None:
    with expected_protocol([(b"MEAS?\n", HANG_UP), (b"MEAS?\n", b"1\n")],
                           transport="memory") as instrument:
        assert query(instrument.stream, b"MEAS?\n") == b""
        with pytest.raises(BrokenPipeError, match="hang-up"):
            instrument.stream.write(b"MEAS?\n")
        instrument.stream.open()
        assert query(instrument.stream, b"MEAS?\n") == b"1\n"


def blocking_query(port: int, lines: list[bytes]) -> list[bytes]:
    """A blocking socket client, as drivers run on their DeviceWorker."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock, \
            sock.makefile("rb") as replies:
        answers = [replies.readline()]
        for line in lines:
            sock.sendall(line)
            answers.append(replies.readline())
        return answers


def test_over_tcp_the_same_pairs_and_the_same_report() -> None:
    async def run(lines: list[bytes]) -> list[bytes]:
        async with expected_protocol(PAIRS) as instrument:
            assert instrument.address == f"127.0.0.1:{instrument.port}"
            return await asyncio.to_thread(blocking_query, instrument.port, lines)

    assert asyncio.run(run([b"INFO?\n", b"CC 1 -2.5\n", b"MEAS?\n"]))[1:] == [
        b"2,0,5,10\n", b"OK\n", b"3.71,0,25.5;3.93,-2.5,25.7\n"]
    with pytest.raises(AssertionError) as failure:
        asyncio.run(run([b"INFO?\n", b"CC 1 2.5\n"]))
    assert str(failure.value).startswith("expected_protocol: deviated at pair 2 of 4\n")
    assert str(failure.value).endswith("received b'CC 1 2.5\\n'\n"
                                       "          (the first difference is at byte 5)")


def test_the_transport_is_checked() -> None:
    with pytest.raises(ValueError, match="'tcp' or 'memory', not 'udp'"):
        expected_protocol(PAIRS, transport="udp")  # type: ignore[arg-type]
    tcp = expected_protocol(PAIRS)
    with pytest.raises(AttributeError, match="no stream"):
        tcp.stream  # noqa: B018
    with pytest.raises(TypeError, match="async with"), tcp:
        pass

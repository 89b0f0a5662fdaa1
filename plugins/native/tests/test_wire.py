"""The host process's protocol: steps and errors survive the trip, frames are bounded, and the
host answers what it cannot do with an error instead of dying."""

from __future__ import annotations

import json
import math
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from cellbench_native.host import serve
from cellbench_native.library import BAD_REPLY, NativeError, StepSpec
from cellbench_native.wire import FAILED, HEADER, MAX_PAYLOAD, OK, HungUp, Op, receive, send
from cellbench_sdk.driver_header import api_version, declarations

from .conftest import Faults, Libraries


def test_a_step_with_a_profile_survives_the_trip() -> None:
    step = StepSpec("PROFILE", 2.0, 4.2, 10.0, 1.5, profile_quantity="VOLTAGE",
                    profile_hold=True, profile_time_s=(0.0, 1.5, 3.0),
                    profile_value=(3.0, 4.1, 3.9))
    assert StepSpec.unpack(step.pack()) == step
    rest = StepSpec.unpack(StepSpec("REST").pack())
    assert rest.mode == "REST" and math.isnan(rest.current_a) and rest.profile_time_s == ()


def test_errors_survive_the_trip_and_garbled_ones_are_bad_replies() -> None:
    error = NativeError("CB_OUT_OF_RANGE", "cb_write(device, 1, 9.0) returned -3: ö")
    back = NativeError.decode(error.encode())
    assert (back.status, back.message) == (error.status, error.message)
    garbled = NativeError.decode(b"\xff{not json")
    assert garbled.status == BAD_REPLY and "garbled error" in garbled.message


@pytest.fixture
def host() -> Iterator[socket.socket]:
    """The station's end of a socketpair whose other end the host's loop serves (on a
    thread here, so that the test sees the loop itself)."""
    station, hosted = socket.socketpair()
    station.settimeout(10)
    thread = threading.Thread(target=serve, args=(hosted,), daemon=True)
    thread.start()
    yield station
    station.close()
    thread.join(10)
    hosted.close()
    assert not thread.is_alive(), "the host loop ends when the station hangs up"


def _ask(sock: socket.socket, op: int, payload: bytes = b"") -> tuple[int, bytes]:
    send(sock, op, payload)
    return receive(sock)


def test_the_host_refuses_calls_before_open_and_unknown_requests(
        host: socket.socket, libraries: Libraries, faults: Faults) -> None:
    code, reply = _ask(host, Op.READ)
    assert code == FAILED
    assert NativeError.decode(reply).message == "the library is not loaded yet"
    request = {"path": str(libraries.faulty), "variant": "osi", "config": faults.config,
               "declarations": declarations(), "version": api_version(), "max_samples": 8}
    assert _ask(host, Op.OPEN, json.dumps(request).encode()) == (OK, b"")
    code, reply = _ask(host, 99)
    assert code == FAILED and "unknown request 99" in NativeError.decode(reply).message
    code, reply = _ask(host, Op.WRITE, b"\x01")  # too short for <id: a bug, reported
    assert code == FAILED and "host process: error(" in NativeError.decode(reply).message
    code, reply = _ask(host, Op.READ)
    assert code == OK and struct.unpack("=2d", reply) == (3.7, 0.0)
    assert _ask(host, Op.CLOSE) == (OK, b"")
    assert faults.calls()[-1][1] == "cb_close"


def test_a_frame_beyond_the_limit_is_refused() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(HEADER.pack(MAX_PAYLOAD + 1, OK))
        with pytest.raises(HungUp, match="beyond the"):
            receive(right)
        left.close()
        with pytest.raises(HungUp, match="closed"):
            receive(right)

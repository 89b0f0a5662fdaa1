"""Every network interface of a serving station flooded with costly reads (rci's STATE? ALL,
CHANNELS? and SAMPLES?, the web's channel list, on 2,000 channels) while a simulated cell
charges into its safety limit: the limit still ends the test at the sample that crossed it, and
no sample is missing (a tick held up by the floods would skip ahead, a gap in the samples)."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import open_database
from cellbench_hal import VirtualClock

NEAR_LIMIT = """\
name: near-limit
capacity: 0.03 Ah
limits:
  voltage_max: 4.0 V
steps:
  - Charge at 1 A for 1 hour
"""
PATIENCE_S = 60.0


class Flood(threading.Thread):
    """A client that sends requests as fast as it can and reads every answer until stopped;
    ``answers`` counts them."""

    def __init__(self, send: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.send, self.answers = send, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.answers += self.send()
            except (OSError, http.client.HTTPException):  # the station went away
                return

    def stop(self) -> None:
        self.stopping.set()
        self.join(PATIENCE_S)


def rci_flood(port: int) -> tuple[Flood, socket.socket]:
    """Pipelines 10 rounds of the costly reads, then reads their 30 replies, again and again."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)
    reader = sock.makefile("rb")
    lines = b"STATE? ALL\nCHANNELS?\nSAMPLES? 1 100\n" * 10

    def send() -> int:
        sock.sendall(lines)
        for _ in range(30):
            if not reader.readline().startswith(b"OK"):
                raise OSError("closed")
        return 30

    return Flood(send), sock


def web_flood(port: int) -> tuple[Flood, http.client.HTTPConnection]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE_S)

    def send() -> int:
        connection.request("GET", "/api/channels")
        response = connection.getresponse()
        if response.status != 200 or not response.read().startswith(b"[{"):
            raise OSError(f"answered {response.status}")
        return 1

    return Flood(send), connection


@pytest.mark.faults
def test_flooded_interfaces_leave_the_safety_loop_on_time(
        tmp_path: Path, serve_until: Callable[..., None], wait_until: Callable[..., Any]
        ) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "near-limit.yaml").write_text(NEAR_LIMIT, encoding="utf-8")
    # One sample per second on a clock 10 times the wall's: a tick held up by 0.1 s of wall
    # time skips ahead, and the samples show it.
    config = station_from_dict({
        "station": {"name": "flooded", "database": db.url, "sample_period": "1 s",
                    "plans_dir": "plans"},
        "channels": [{"driver": "sim", "settings": {"count": 2000, "capacity_ah": 0.03}}],
        "interfaces": [{"kind": "rci", "settings": {"tcp": "127.0.0.1:0", "rate": 1e6}},
                       {"kind": "web", "settings": {"listen": "127.0.0.1:0"}}]})
    manager = PluginManager()
    manager.load()
    station = Station(config, manager, base_dir=tmp_path)
    service = StationService(station, db, VirtualClock(10.0), manager.hook, version="1")
    outcome: dict[str, Any] = {}

    def flood_while_a_test_runs() -> None:
        (_, rci), (_, web) = station.interfaces
        rci_port, web_port = rci.address[1], web.address[1]
        clients: list[tuple[Flood, socket.socket | http.client.HTTPConnection]] = [
            rci_flood(rci_port), rci_flood(rci_port), web_flood(web_port), web_flood(web_port)]
        floods = [flood for flood, _ in clients]
        try:
            for flood in floods:
                flood.start()
            wait_until(lambda: min(f.answers for f in floods), "every flood to be answered")
            with socket.create_connection(("127.0.0.1", rci_port), timeout=PATIENCE_S) as sock:
                reader = sock.makefile("rb")
                sock.sendall(b"START 1 near-limit\n")
                started = reader.readline()
                assert started.startswith(b"OK "), started
                before = [f.answers for f in floods]

                def state() -> bytes:
                    sock.sendall(b"STATE? 1\n")
                    return reader.readline()

                wait_until(state, "the test to end", check=lambda line: b",idle," in line,
                           interval=0.2)
            outcome["test_id"] = int(started.split()[1])
            outcome["during"] = [f.answers - b for f, b in zip(floods, before, strict=True)]
        finally:  # each stops after its answer in hand, then its connection is closed
            for flood in floods:
                flood.stopping.set()
            for flood in floods:
                flood.stop()
            for _, connection in clients:
                connection.close()

    try:
        serve_until(service, lambda: True, flood_while_a_test_runs)
        test = db.test(outcome["test_id"])
        samples = db.samples(outcome["test_id"], ["test_time_s", "voltage_v"])
    finally:
        db.close()
    assert min(outcome["during"]) > 0, outcome  # every flood was answered while the test ran
    assert test is not None and test.end_reason and "voltage" in test.end_reason
    times, volts = samples["test_time_s"], samples["voltage_v"]
    assert len(times) > 15
    assert np.diff(times).max() < 2.0, np.diff(times)  # no gap: no tick skipped ahead
    crossed = int(np.argmax(volts >= 4.0))
    assert volts[crossed] >= 4.0 and len(volts) - 1 - crossed <= 1  # ended at the crossing

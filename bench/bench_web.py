"""Web interface: live latency and CPU with 20 WebSocket clients on a 1,000-channel station,
and streaming a 1-million-sample test as NDJSON and as Arrow against a plain SQL read of the
same rows.

Live: ``cellbench serve`` runs ``--channels`` simulated channels on the real clock sampled
every ``--period`` (each running a test, every sample committed to SQLite). Measured, one after
the other in the same run on the same machine:

- baseline: the station without the web interface, its CPU over ``--seconds``;
- web: the same station with the web interface and ``--clients`` WebSocket clients (one
  client process, asyncio, each watching all channels): the station's CPU over ``--seconds``,
  and per sample the latency from its sample time (the runner's tick; the sample is handed to
  the database writer and to the interface in that tick) to its arrival at a client.

Streaming: a test of ``--samples`` samples written to a SQLite station database, then read
(a) with sqlite3 in one ``SELECT ... ORDER BY seq`` (fetchall), (b) streamed from
``cellbench web --db`` as ``samples.ndjson`` through httpx, counting the rows received, and
(c) streamed as ``samples.arrow`` (an Arrow IPC stream) read into a table with pyarrow.

    .venv/bin/python bench/bench_web.py [--channels 1000] [--clients 20] [--seconds 20]
                                        [--samples 1000000] [--skip-live | --skip-stream]

Prints figures; asserts nothing about time. The clients share the machine's cores with the
station, as browsers on the control PC would.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

PLAN = """\
name: long charge
capacity: 2.5 Ah
steps:
  - Charge at 0.1C for 100 hours
"""
CLI = [sys.executable, "-c", "from cellbench_core.cli import main; main()"]


# ---- the station -------------------------------------------------------------------------------

def start_station(folder: Path, channels: int, period: str, web: bool
                  ) -> tuple[subprocess.Popen[str], str | None]:
    """``cellbench serve`` with every channel's test queued; its web URL if it serves one."""
    from cellbench_core.storage import open_database
    from cellbench_core.storage.queue import TestQueue

    database = folder / ("web.db" if web else "plain.db")
    db = open_database(f"sqlite:///{database}")
    try:
        queue = TestQueue(db)
        for channel in range(1, channels + 1):
            queue.add(channel, PLAN, plan_source="long.yaml")
    finally:
        db.close()
    interface = '\n[[interfaces]]\nkind = "web"\n[interfaces.settings]\n' \
                'listen = "127.0.0.1:0"\n' if web else ""
    station = folder / f"{database.stem}.toml"
    station.write_text(f"""\
[station]
name = "bench"
database = "sqlite:///{database}"
sample_period = "{period}"

[[channels]]
driver = "sim"
[channels.settings]
count = {channels}
{interface}""", encoding="utf-8")
    process = subprocess.Popen([*CLI, "serve", "--station", str(station)],
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if " ready: " in line:
            threading.Thread(target=process.stderr.read, daemon=True).start()
            found = re.search(r"interfaces: web (http://[0-9.:]+)/", line)
            _wait_running(database, channels)
            return process, found[1] if found else None
    raise RuntimeError(f"cellbench serve exited with {process.wait()}")


def _wait_running(database: Path, channels: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        with sqlite3.connect(database, timeout=30) as con:
            running = con.execute("SELECT count(*) FROM tests WHERE status = 'running'"
                                  ).fetchone()[0]
        if running == channels:
            return
        assert time.monotonic() < deadline, f"only {running} of {channels} tests started"
        time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, seconds: float) -> float:
    """The process's CPU over the next ``seconds``, as a share of one core."""
    start, at = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start) / (time.monotonic() - at)


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(120)


# ---- the WebSocket clients (run in their own process) ------------------------------------------

async def _clients(url: str, clients: int, seconds: float) -> dict[str, float]:
    import orjson
    from websockets.asyncio.client import connect

    starts = {t["id"]: t["start_unix_s"] for t in httpx.get(
        url + "/api/tests", params={"limit": 1000, "status": "running"}, timeout=60).json()}
    start_of = np.zeros(max(starts) + 1)
    for test_id, start in starts.items():
        start_of[test_id] = start
    to_client: list[np.ndarray] = []  # per sample: sample time to arrival
    to_send: list[np.ndarray] = []  # per sample: sample time to the hub's send
    dropped = 0
    messages = 0

    async def one() -> None:
        nonlocal dropped, messages
        async with connect(url.replace("http", "ws") + "/api/live", max_size=None) as socket:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                data = orjson.loads(await socket.recv())
                now = time.time()
                if data["type"] == "samples":
                    rows = np.array(data["rows"], dtype=np.float64)
                    sampled = start_of[rows[:, 1].astype(np.int64)] + rows[:, 3]
                    to_client.append(now - sampled)
                    to_send.append(data["sent_unix_s"] - sampled)
                    messages += 1
                elif data["type"] == "dropped":
                    dropped += data["count"]

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(one() for _ in range(clients)))
    cpu_share = (time.process_time() - cpu) / (time.monotonic() - wall)
    every = np.concatenate(to_client)
    sent = np.concatenate(to_send)
    return {"samples": len(every), "messages": messages, "dropped": dropped, "cpu": cpu_share,
            **{f"p{q}_ms": float(np.percentile(every, q) * 1e3) for q in (50, 95, 99)},
            "max_ms": float(every.max() * 1e3),
            **{f"send_p{q}_ms": float(np.percentile(sent, q) * 1e3) for q in (50, 95)}}


def _client_main(url: str, clients: int, seconds: float) -> None:
    print(json.dumps(asyncio.run(_clients(url, clients, seconds))), flush=True)


# ---- streaming ---------------------------------------------------------------------------------

def write_test(path: Path, samples: int) -> None:
    """A station database holding one finished test of ``samples`` samples."""
    from cellbench_core.storage import SampleRows, SampleWriter, TestEnd, TestStart, open_database

    db = open_database(f"sqlite:///{path}")
    writer = SampleWriter(db)
    (test_id,) = db.start_tests([TestStart(
        name="long", channel="1", driver="sim", battery=None, plan_name="long",
        plan_source="long.yaml", plan_text=PLAN, sample_period_s=1.0, station="bench",
        start_unix_s=1.7e9)])
    rng = np.random.default_rng(1)
    chunk = 50_000
    for first in range(1, samples + 1, chunk):
        seq = np.arange(first, min(first + chunk, samples + 1), dtype=np.int64)
        n = len(seq)
        t = seq.astype(np.float64)
        writer.submit(SampleRows(
            test_id=np.full(n, test_id, dtype=np.int64), seq=seq, test_time_s=t,
            unix_time_s=1.7e9 + t, step_time_s=t, voltage_v=rng.uniform(2.5, 4.2, n),
            current_a=rng.uniform(-5, 5, n), power_w=rng.uniform(-20, 20, n),
            temperature_c=rng.normal(25, 2, n), step_index=np.zeros(n, dtype=np.int64),
            plan_line=np.full(n, 4, dtype=np.int64), cycle=np.ones(n, dtype=np.int64),
            ah=rng.normal(0, 1, n), wh=rng.normal(0, 4, n)))
        writer.flush()
    db.finish_tests([TestEnd(test_id, "finished", "plan complete", 1.7e9 + samples)])
    writer.close()
    db.close()


def plain_read(path: Path) -> tuple[int, float]:
    """Rows and seconds of one SELECT of every sample column, in seq order, fetched."""
    columns = ("seq, test_time_s, unix_time_s, step_time_s, voltage_v, current_a, power_w, "
               "temperature_c, step_index, plan_line, cycle, ah, wh")
    with sqlite3.connect(path) as con:
        start = time.perf_counter()
        rows = con.execute(f"SELECT {columns} FROM samples WHERE test_id = 1 ORDER BY seq"
                           ).fetchall()
        return len(rows), time.perf_counter() - start


def streamed(path: Path) -> dict[str, tuple[int, float]]:
    """Rows and seconds of streaming the test from ``cellbench web --db`` as NDJSON (lines
    counted as received) and as Arrow (read into a table as received)."""
    import pyarrow as pa

    from cellbench_sdk.peer import free_port

    port = free_port()
    process = subprocess.Popen([*CLI, "web", "--db", f"sqlite:///{path}", "--listen",
                                f"127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split("ready: ", 1)[1].strip().rstrip("/")
        test = url + "/api/stations/bench/tests/1"
        figures = {}
        lines = 0
        start = time.perf_counter()
        with httpx.stream("GET", test + "/samples.ndjson", timeout=300) as response:
            for data in response.iter_raw(1 << 20):
                lines += data.count(b"\n")
        figures["NDJSON"] = lines - 1, time.perf_counter() - start  # less the columns line
        start = time.perf_counter()
        with httpx.stream("GET", test + "/samples.arrow", timeout=300) as response:
            reader = pa.ipc.open_stream(io.BufferedReader(_RawStream(response.iter_raw(1 << 20))))
            table = reader.read_all()
        figures["Arrow"] = table.num_rows, time.perf_counter() - start
        return figures
    finally:
        process.terminate()
        process.wait(60)


class _RawStream(io.RawIOBase):
    """A response's bytes as a file for pyarrow, read as they arrive."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        super().__init__()
        self._pieces, self._rest = pieces, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            self._rest = next(self._pieces, b"")
            if not self._rest:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def live_figures(folder: Path, args: argparse.Namespace) -> None:
    """The live measurements: the station's CPU without and with the web interface and its
    clients, and the clients' latency."""
    process, _ = start_station(folder, args.channels, args.period, web=False)
    time.sleep(2)  # past the start of every test
    baseline = cpu_share(process.pid, args.seconds)
    stop(process)
    print(f"station without web: {baseline:.1%} of a core")

    process, url = start_station(folder, args.channels, args.period, web=True)
    assert url is not None
    time.sleep(2)  # past the start of every test, as for the baseline
    idle = cpu_share(process.pid, args.seconds / 2)
    print(f"station with web, no client: {idle:.1%} of a core")
    clients = subprocess.Popen(
        [sys.executable, __file__, "--client", url, "--clients", str(args.clients),
         "--seconds", str(args.seconds + 4)], stdout=subprocess.PIPE, text=True)
    time.sleep(2)  # the clients connected
    loaded = cpu_share(process.pid, args.seconds)
    out, _ = clients.communicate(timeout=args.seconds + 120)
    stop(process)
    live = json.loads(out)
    print(f"station with web, {args.clients} clients: {loaded:.1%} of a core "
          f"(+{loaded - baseline:.1%} over the station without web)")
    print(f"live: {live['samples']:,} samples in {live['messages']:,} messages, "
          f"dropped {live['dropped']}; sample to client p50 {live['p50_ms']:.1f} ms, "
          f"p95 {live['p95_ms']:.1f} ms, p99 {live['p99_ms']:.1f} ms, "
          f"max {live['max_ms']:.1f} ms")
    print(f"      of which sample to the hub's send: p50 {live['send_p50_ms']:.1f} ms, "
          f"p95 {live['send_p95_ms']:.1f} ms; the client process used "
          f"{live['cpu']:.0%} of a core")


# ---- main --------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--period", default="1 s")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--skip-stream", action="store_true", help="live figures only")
    parser.add_argument("--skip-live", action="store_true", help="streaming figures only")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: run the clients
    args = parser.parse_args()
    if args.client:
        _client_main(args.client, args.clients, args.seconds)
        return
    print(f"{args.channels} channels every {args.period}, {args.clients} WebSocket clients, "
          f"{args.seconds:g} s per measurement; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        if not args.skip_live:
            live_figures(Path(folder), args)
        if args.skip_stream:
            return
        database = Path(folder) / "stream.db"
        write_test(database, args.samples)
        rows, seconds = plain_read(database)
        print(f"plain SQL read: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s")
        for form, (sent, taken) in streamed(database).items():
            print(f"{form + ' stream:':15} {sent:,} rows in {taken:.2f} s = "
                  f"{sent / taken:,.0f} rows/s ({sent / taken / (rows / seconds):.0%} of the "
                  "plain read)")


if __name__ == "__main__":
    main()

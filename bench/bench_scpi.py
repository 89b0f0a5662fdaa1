"""SCPI channels against emulated instruments on loopback.

1. Per instrument (SMU, bidirectional supply, supply + load pair): samples per second of
   ``measure()`` called back to back, and its p50/p99 latency, beside the same measurement
   query written and read on a bare blocking socket to the same emulator in the same run (the
   round trip without pyvisa, the worker thread and the driver).
2. A station of 32 emulated SMUs sampled every 100 ms by the runner for a while: late ticks
   (a sample interval beyond 1.5 periods) and the CPU the station process takes.

The emulators run in a subprocess (``cellbench_scpi.emulator``), as instruments are other
machines: the station's CPU is the station's alone.

    .venv/bin/python bench/bench_scpi.py [--seconds 3] [--station-seconds 20] [--channels 32]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from cellbench_core.plan import parse_plan
from cellbench_core.runner import ChannelRef, Runner, TestRequest
from cellbench_core.storage import SampleWriter, open_database
from cellbench_scpi.driver import ScpiChannel, bidirectional_channel, pair_channel, smu_channel
from cellbench_scpi.emulator import Emulator
from cellbench_scpi.settings import (
    BidirectionalSettings,
    InstrumentSettings,
    PairSettings,
    SmuSettings,
)
from cellbench_sdk import RealClock, Step, StepMode


def _emulate(models: list[str], ports: multiprocessing.SimpleQueue[list[list[int]]]) -> None:
    async def run() -> None:
        emulators = [await Emulator.create(model).start() for model in models]
        ports.put([emulator.ports for emulator in emulators])  # free ones, chosen by the OS
        await asyncio.Event().wait()

    asyncio.run(run())


def _start(models: list[str]) -> tuple[multiprocessing.Process, list[list[int]]]:
    queue: multiprocessing.SimpleQueue[list[list[int]]] = multiprocessing.SimpleQueue()
    process = multiprocessing.Process(target=_emulate, args=(models, queue), daemon=True)
    process.start()
    return process, queue.get()


def _resource(port: int) -> str:
    return f"TCPIP::127.0.0.1::{port}::SOCKET"


def _driver(model: str, ports: list[int]) -> ScpiChannel:
    if model == "smu":
        return smu_channel(SmuSettings(resource=_resource(ports[0])))
    if model == "bidirectional":
        return bidirectional_channel(BidirectionalSettings(resource=_resource(ports[0]),
                                                           watchdog_s=0))
    return pair_channel(PairSettings(supply=InstrumentSettings(resource=_resource(ports[0])),
                                     load=InstrumentSettings(resource=_resource(ports[1]))))


#: The measurement query each model's driver sends (to the instrument it measures on).
QUERY = {"smu": b":READ?\n", "bidirectional": b"MEAS:ARR?\n", "pair": b"MEAS:VOLT?;:MEAS:CURR?\n"}


def bare(port: int, query: bytes, seconds: float) -> np.ndarray:
    """Seconds per round trip of ``query`` on a plain blocking socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        sock.sendall(query)
        stream.readline()
        times.append(time.perf_counter() - start)
    sock.close()
    return np.array(times)


async def sampled(model: str, ports: list[int], seconds: float) -> np.ndarray:
    """Seconds per ``measure()`` of the driver, with a step applied (a CC charge)."""
    driver = _driver(model, ports)
    await driver.open(RealClock())
    try:
        await driver.apply(0, Step(StepMode.CC, current_a=0.1))
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            await driver.measure()
            times.append(time.perf_counter() - start)
    finally:
        await driver.close()
    return np.array(times)


def _ms(times: np.ndarray, q: float) -> str:
    return f"{np.percentile(times, q) * 1e3:6.2f} ms"


def per_instrument(seconds: float) -> None:
    models = ["smu", "bidirectional", "pair"]
    process, ports = _start(models)
    try:
        print(f"{'instrument':<14} {'samples/s':>10} {'p50':>9} {'p99':>9} | {'bare/s':>8} "
              f"{'p50':>9} {'p99':>9} | {'rate vs bare':>12}")
        for model, group in zip(models, ports, strict=True):
            driver_times = asyncio.run(sampled(model, group, seconds))
            # The pair measures on its supply while it charges.
            bare_times = bare(group[0], QUERY[model], seconds)
            rate, bare_rate = len(driver_times) / seconds, len(bare_times) / seconds
            print(f"{model:<14} {rate:>10.0f} {_ms(driver_times, 50)} {_ms(driver_times, 99)} | "
                  f"{bare_rate:>8.0f} {_ms(bare_times, 50)} {_ms(bare_times, 99)} | "
                  f"{rate / bare_rate:>11.0%}")
    finally:
        process.terminate()


class TickClock(RealClock):
    """The wall clock, recording how late the runner's tick loop wakes for each tick."""

    def __init__(self) -> None:
        super().__init__()
        self.lateness: list[float] = []

    async def sleep_until(self, t: float) -> None:
        await super().sleep_until(t)
        self.lateness.append(self.now() - t)


PLAN = """\
name: bench
steps:
  - Charge at 0.05 A for {seconds} s
"""


def station(channels: int, seconds: float, period: float) -> None:
    process, ports = _start(["smu"] * channels)
    drivers = [_driver("smu", group) for group in ports]
    plan = parse_plan(PLAN.format(seconds=seconds), "bench.yaml")
    with tempfile.TemporaryDirectory() as folder:
        db = open_database(f"sqlite:///{Path(folder) / 'bench.db'}")
        writer = SampleWriter(db)
        clock = TickClock()

        async def run() -> tuple[float, float]:
            for driver in drivers:
                await driver.open(clock)
            try:
                runner = Runner(db, writer, clock, sample_period_s=period)
                requests = [TestRequest(ChannelRef(n + 1, d, "scpi-smu", 0), plan, None)
                            for n, d in enumerate(drivers)]
                wall, cpu = time.perf_counter(), time.process_time()
                outcomes = await runner.run(requests)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                assert all(o.status.value == "finished" for o in outcomes), outcomes
                return wall, cpu
            finally:
                for driver in drivers:
                    await driver.close()

        try:
            wall, cpu = asyncio.run(run())
        finally:
            writer.close()
            process.terminate()
        intervals = np.concatenate([np.diff(db.samples(t)["test_time_s"])
                                    for t in range(1, channels + 1)])
        lateness = np.array(clock.lateness)
        late = int((lateness > period / 2).sum())
        print(f"\n{channels} SMUs at {period * 1e3:.0f} ms for {seconds:g} s: "
              f"{len(intervals) + channels} samples in {len(lateness)} ticks; "
              f"{late} ticks woke more than half a period late (p99 "
              f"{np.percentile(lateness, 99) * 1e3:.1f} ms, worst {lateness.max() * 1e3:.0f} ms); "
              f"a channel's sample intervals p1..p99 {np.percentile(intervals, 1) * 1e3:.0f}.."
              f"{np.percentile(intervals, 99) * 1e3:.0f} ms; "
              f"station CPU {cpu / wall:.0%} of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per instrument")
    parser.add_argument("--station-seconds", type=float, default=20.0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--period", type=float, default=0.1)
    args = parser.parse_args()
    per_instrument(args.seconds)
    station(args.channels, args.station_seconds, args.period)


if __name__ == "__main__":
    main()

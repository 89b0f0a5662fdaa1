"""Native driver libraries: calls per second and latency through the host process against the
same calls in-process, in the same run.

The example driver of docs/native.md (plugins/native/examples/example_driver.c) is compiled
with gcc, then called three ways:

- cffi direct: ``NativeLibrary`` on the benchmark's thread: no worker thread, no host, no checks
  of what comes back (the floor);
- in-process: the plugin's devices with ``isolation = "in-process"`` (cffi on the device's
  worker thread, replies checked);
- host process: the plugin's devices with the default ``isolation = "process"`` (the event loop
  writes a request to the host's pipe and awaits its reply; no station thread waits).

Calls: ``cb_read`` of the OSI device's 4 signals, ``cb_measure`` of an 8-channel bank, and
``cb_apply`` of a CC step. The ways take turns in rounds of ``--round`` calls, so that other work
on the machine falls on all of them alike; the CPU time each call costs (this process, and the
host processes read from Linux's /proc) does not depend on that other work. Target:
host-process call p99 < 1 ms.

    .venv/bin/python bench/bench_native.py [--calls 20000] [--round 500]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from cellbench_native.build import compile_library
from cellbench_native.channels import NativeChannels
from cellbench_native.device import NativeDevice
from cellbench_native.hosted import HostedLibrary
from cellbench_native.library import NativeLibrary, StepSpec, Variant
from cellbench_native.settings import Isolation, NativeSettings
from cellbench_sdk import RealClock, Step, StepMode
from cellbench_sdk.driver_header import api_version, declarations

EXAMPLE = Path(__file__).parents[1] / "plugins" / "native" / "examples" / "example_driver.c"
BANK_CONFIG = "channels=8"
CALLS = ("cb_read", "cb_measure", "cb_apply")
Call = Callable[[], Awaitable[object]]


def direct(path: str, variant: Variant, config: str) -> NativeLibrary:
    """An open library of ``variant`` on this thread, without a device around it."""
    library = NativeLibrary(path, variant, declarations(), api_version())
    library.open(config)
    return library


def synchronous(call: Callable[[], object]) -> Call:
    """``call`` as an awaitable call, run on this thread at once."""
    async def run() -> object:
        return call()
    return run


class Way:
    """The three calls one way, a close, and the host processes' CPU time so far."""

    def __init__(self, calls: dict[str, Call], hosts: list[int] | None = None,
                 close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.calls, self.hosts, self.close = calls, hosts or [], close

    def host_cpu_s(self) -> float:
        """CPU seconds the host processes have used (Linux's /proc; 0 without hosts)."""
        total = 0
        for pid in self.hosts:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


async def devices(path: str, isolation: Isolation) -> Way:
    """The three calls through the plugin's devices, as a station makes them."""
    device = NativeDevice(NativeSettings(library=Path(path), isolation=isolation))
    bank = NativeChannels(NativeSettings(library=Path(path), isolation=isolation,
                                         config=BANK_CONFIG))
    await device.open(RealClock())
    await bank.open(RealClock())
    step = Step(StepMode.CC, current_a=1.0)

    async def close() -> None:
        await device.close()
        await bank.close()

    hosts = [d.handle.library.pid for d in (device, bank)
             if isinstance(d.handle.library, HostedLibrary) and d.handle.library.pid]
    return Way({"cb_read": device.read, "cb_measure": bank.measure,
                "cb_apply": lambda: bank.apply(0, step)}, hosts, close)


async def timed(call: Call, calls: int) -> list[float]:
    """Seconds per call of ``calls`` awaited calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return times


async def run(path: str, calls: int, round_: int
              ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, float]]]:
    """Seconds per call, and CPU seconds per call (this process and the hosts), by way and
    call."""
    osi, bank = direct(path, "osi", ""), direct(path, "bank", BANK_CONFIG)
    step = StepSpec("CC", current_a=1.0)
    ways = {
        "cffi direct": Way({"cb_read": synchronous(osi.read),
                            "cb_measure": synchronous(bank.measure),
                            "cb_apply": synchronous(lambda: bank.apply(0, step))}),
        "in-process": await devices(path, "in-process"),
        "host process": await devices(path, "process"),
    }
    times: dict[str, dict[str, list[float]]] = {w: {c: [] for c in CALLS} for w in ways}
    cpu = {w: dict.fromkeys(CALLS, 0.0) for w in ways}
    try:
        for way in ways.values():  # warm up
            for warm_up in way.calls.values():
                await timed(warm_up, 200)
        for _ in range(max(1, calls // round_)):
            for name, way in ways.items():
                for call in CALLS:
                    used = time.process_time() + way.host_cpu_s()
                    times[name][call] += await timed(way.calls[call], round_)
                    cpu[name][call] += time.process_time() + way.host_cpu_s() - used
    finally:
        osi.close()
        bank.close()
        for way in ways.values():
            if way.close is not None:
                await way.close()
    counts = {w: {c: len(t) for c, t in by_call.items()} for w, by_call in times.items()}
    return ({w: {c: np.array(t) for c, t in by_call.items()} for w, by_call in times.items()},
            {w: {c: cpu[w][c] / counts[w][c] for c in CALLS} for w in ways})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--round", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = str(compile_library(EXAMPLE, Path(folder) / "libexample.so"))
        ways, cpu = asyncio.run(run(path, args.calls, args.round))
    print(f"native driver library calls, {args.calls} each in rounds of {args.round} "
          "(example driver; bank of 8 channels)")
    print(f"{'call':<11} {'way':<13} {'calls/s':>10} {'p50 µs':>8} {'p99 µs':>8} "
          f"{'max µs':>8} {'> 1 ms':>7} {'CPU µs':>7}")
    for call in CALLS:
        for way, results in ways.items():
            t = results[call]
            print(f"{call:<11} {way:<13} {1 / t.mean():>10,.0f} {np.median(t) * 1e6:>8.1f} "
                  f"{np.percentile(t, 99) * 1e6:>8.1f} {t.max() * 1e6:>8.1f} "
                  f"{(t > 1e-3).mean():>7.2%} {cpu[way][call] * 1e6:>7.1f}")
    print("(CPU µs: CPU time per call of this process and, for the host process, of the hosts)")
    print()
    for call in CALLS:
        host, local = ways["host process"][call], ways["in-process"][call]
        print(f"{call}: host process / in-process: p50 x{np.median(host) / np.median(local):.2f}"
              f", p99 x{np.percentile(host, 99) / np.percentile(local, 99):.2f}; host p99 "
              f"{np.percentile(host, 99) * 1e3:.3f} ms (target < 1 ms)")


if __name__ == "__main__":
    main()

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
on the machine falls on all of them alike. Target: host-process call p99 < 1 ms.

    .venv/bin/python bench/bench_native.py [--calls 20000] [--round 500]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from cellbench_native.build import compile_library
from cellbench_native.channels import NativeChannels
from cellbench_native.device import NativeDevice
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


async def devices(path: str, isolation: Isolation
                  ) -> tuple[dict[str, Call], Callable[[], Awaitable[None]]]:
    """The three calls through the plugin's devices, as a station makes them, and a close."""
    device = NativeDevice(NativeSettings(library=Path(path), isolation=isolation))
    bank = NativeChannels(NativeSettings(library=Path(path), isolation=isolation,
                                         config=BANK_CONFIG))
    await device.open(RealClock())
    await bank.open(RealClock())
    step = Step(StepMode.CC, current_a=1.0)

    async def close() -> None:
        await device.close()
        await bank.close()

    return {"cb_read": device.read, "cb_measure": bank.measure,
            "cb_apply": lambda: bank.apply(0, step)}, close


async def timed(call: Call, calls: int) -> list[float]:
    """Seconds per call of ``calls`` awaited calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return times


async def run(path: str, calls: int, round_: int) -> dict[str, dict[str, np.ndarray]]:
    """Seconds per call, by way and call."""
    osi, bank = direct(path, "osi", ""), direct(path, "bank", BANK_CONFIG)
    step = StepSpec("CC", current_a=1.0)
    in_process, close_in_process = await devices(path, "in-process")
    hosted, close_hosted = await devices(path, "process")
    ways: dict[str, dict[str, Call]] = {
        "cffi direct": {"cb_read": synchronous(osi.read),
                        "cb_measure": synchronous(bank.measure),
                        "cb_apply": synchronous(lambda: bank.apply(0, step))},
        "in-process": in_process,
        "host process": hosted,
    }
    times: dict[str, dict[str, list[float]]] = {w: {c: [] for c in CALLS} for w in ways}
    try:
        for way in ways.values():  # warm up
            for warm_up in way.values():
                await timed(warm_up, 200)
        for _ in range(max(1, calls // round_)):
            for name, way in ways.items():
                for call in CALLS:
                    times[name][call] += await timed(way[call], round_)
    finally:
        osi.close()
        bank.close()
        await close_in_process()
        await close_hosted()
    return {w: {c: np.array(t) for c, t in by_call.items()} for w, by_call in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--round", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = str(compile_library(EXAMPLE, Path(folder) / "libexample.so"))
        ways = asyncio.run(run(path, args.calls, args.round))
    print(f"native driver library calls, {args.calls} each in rounds of {args.round} "
          "(example driver; bank of 8 channels)")
    print(f"{'call':<11} {'way':<13} {'calls/s':>10} {'p50 µs':>8} {'p99 µs':>8} "
          f"{'max µs':>8} {'> 1 ms':>7}")
    for call in CALLS:
        for way, results in ways.items():
            t = results[call]
            print(f"{call:<11} {way:<13} {1 / t.mean():>10,.0f} {np.median(t) * 1e6:>8.1f} "
                  f"{np.percentile(t, 99) * 1e6:>8.1f} {t.max() * 1e6:>8.1f} "
                  f"{(t > 1e-3).mean():>7.2%}")
    print()
    for call in CALLS:
        host, local = ways["host process"][call], ways["in-process"][call]
        print(f"{call}: host process / in-process: p50 x{np.median(host) / np.median(local):.2f}"
              f", p99 x{np.percentile(host, 99) / np.percentile(local, 99):.2f}; host p99 "
              f"{np.percentile(host, 99) * 1e3:.3f} ms (target < 1 ms)")


if __name__ == "__main__":
    main()

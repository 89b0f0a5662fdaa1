"""Native driver libraries: calls per second and latency through the host process against the
same calls in-process, in the same run.

The example driver of docs/native.md (plugins/native/examples/example_driver.c) is compiled
with gcc, then called four ways:

- cffi direct: ``NativeLibrary`` on this thread, no worker thread, no host (the floor);
- in-process: the plugin's devices with ``isolation = "in-process"`` (cffi on the worker thread);
- host process: the plugin's devices with the default ``isolation = "process"`` (the event loop
  writes a request to the host and awaits its reply: no thread of the station waits).

Calls: ``cb_read`` of the OSI device's 4 signals, ``cb_measure`` of an 8-channel bank, and
``cb_apply`` of a CC step. Target: host-process call p99 < 1 ms.

    .venv/bin/python bench/bench_native.py [--calls 20000]

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


def timed(call: Callable[[], object], calls: int) -> np.ndarray:
    """Seconds per call of ``call``, ``calls`` times after a short warm-up."""
    for _ in range(min(200, calls)):
        call()
    times = np.empty(calls)
    for k in range(calls):
        start = time.perf_counter()
        call()
        times[k] = time.perf_counter() - start
    return times


async def timed_async(call: Callable[[], Awaitable[object]], calls: int) -> np.ndarray:
    """Seconds per awaited call of ``call``."""
    for _ in range(min(200, calls)):
        await call()
    times = np.empty(calls)
    for k in range(calls):
        start = time.perf_counter()
        await call()
        times[k] = time.perf_counter() - start
    return times


def direct(path: str, variant: Variant, config: str) -> NativeLibrary:
    """An open library of ``variant`` on this thread, without a device around it."""
    library = NativeLibrary(path, variant, declarations(), api_version())
    library.open(config)
    return library


def run_direct(path: str, calls: int) -> dict[str, np.ndarray]:
    """The three calls on a bare library on this thread."""
    osi = direct(path, "osi", "")
    bank = direct(path, "bank", BANK_CONFIG)
    step = StepSpec("CC", current_a=1.0)
    try:
        return {"cb_read": timed(osi.read, calls), "cb_measure": timed(bank.measure, calls),
                "cb_apply": timed(lambda: bank.apply(0, step), calls)}
    finally:
        osi.close()
        bank.close()


async def run_devices(path: str, calls: int, isolation: Isolation) -> dict[str, np.ndarray]:
    """The three calls through the plugin's devices, as a station makes them."""
    device = NativeDevice(NativeSettings(library=Path(path), isolation=isolation))
    bank = NativeChannels(NativeSettings(library=Path(path), isolation=isolation,
                                         config=BANK_CONFIG))
    await device.open(RealClock())
    await bank.open(RealClock())
    step = Step(StepMode.CC, current_a=1.0)
    try:
        return {"cb_read": await timed_async(device.read, calls),
                "cb_measure": await timed_async(bank.measure, calls),
                "cb_apply": await timed_async(lambda: bank.apply(0, step), calls)}
    finally:
        await device.close()
        await bank.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as folder:
        path = str(compile_library(EXAMPLE, Path(folder) / "libexample.so"))
        ways = {
            "cffi direct": run_direct(path, calls),
            "in-process": asyncio.run(run_devices(path, calls, "in-process")),
            "host process": asyncio.run(run_devices(path, calls, "process")),
        }
    print(f"native driver library calls, {calls} each (example driver; bank of 8 channels)")
    print(f"{'call':<11} {'way':<17} {'calls/s':>9} {'p50 µs':>8} {'p99 µs':>8} "
          f"{'max µs':>8}")
    for call in ("cb_read", "cb_measure", "cb_apply"):
        for way, results in ways.items():
            t = results[call]
            print(f"{call:<11} {way:<17} {1 / t.mean():>9,.0f} {np.median(t) * 1e6:>8.1f} "
                  f"{np.percentile(t, 99) * 1e6:>8.1f} {t.max() * 1e6:>8.1f}")
    print()
    for call in ("cb_read", "cb_measure", "cb_apply"):
        host = ways["host process"][call]
        local = ways["in-process"][call]
        print(f"{call}: host process / in-process: p50 x{np.median(host) / np.median(local):.1f}"
              f", p99 x{np.percentile(host, 99) / np.percentile(local, 99):.1f}; host p99 "
              f"{np.percentile(host, 99) * 1e3:.3f} ms (target < 1 ms)")


if __name__ == "__main__":
    main()

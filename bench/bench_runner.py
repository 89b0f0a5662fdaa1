"""Runner benchmark: simulated channel-seconds per wall second and persisted samples per second.

Prints, for 1, 100, 1,000 and 10,000 simulated channels on the virtual clock (every sample
persisted to SQLite), the replay speed and samples/s, beside the rows/s that plain sqlite3
executemany reaches into the same kind of SQLite table in the same run (the ceiling). Then
1,000 channels served by a simulated OSI device: its signals recorded, then also limited and
ended on, against the same channels without a device. Then 10,000 channels at 10 Hz on the
real clock: CPU used (of the two cores) and sample-to-commit latency. Last, the design choice
of one shared loop versus one asyncio task per channel.

    uv run python bench/bench_runner.py [--quick]

Targets (issue 2): 1,000 channels at 1 s replay at >= 250x real time with every sample
persisted (>= 250,000 samples/s); 10,000 channels at 10 Hz keep up in real time using under
half of the two cores, sample-to-commit under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_storage import bench_raw, cellbench_samples_ddl, raw_rows

from cellbench_core.plan import parse_plan
from cellbench_core.runner import ChannelRef, Runner, TestRequest
from cellbench_core.storage import SampleWriter, open_database
from cellbench_hal import Clock, RealClock, VirtualClock
from cellbench_sim.channel import SimChannels, SimChannelSettings
from cellbench_sim.osi import SimOsiDevice

PLAN = """
name: bench
capacity: 2.5 Ah
limits: {{voltage_max: 4.3 V, voltage_min: 2.4 V}}
steps:
  - repeat: {half_hours}
    steps:
      - Charge at 0.5C to 4.1 V for 15 minutes
      - Discharge at 0.5C for 15 minutes
"""


#: The same plan, on a channel that a simulated OSI device serves: safety limits on two of its
#: signals and steps that may end on a third (none trips or ends a step early).
DEVICE_PLAN = """
name: bench with device signals
capacity: 2.5 Ah
limits:
  voltage_max: 4.3 V
  voltage_min: 2.4 V
  rig.temperature_c: {{max: 80 °C, for: 5 s}}
  rig.pressure_kpa: {{min: 50}}
steps:
  - repeat: {half_hours}
    steps:
      - mode: cccv
        direction: charge
        current: 0.5C
        voltage: 4.1 V
        until: rig.heater_power_w >= 100
        for: 15 minutes
      - Discharge at 0.5C for 15 minutes
"""


_RUNS = itertools.count()


def run_station(tmp: Path, channels: int, sim_seconds: float, period: float,
                clock: Clock, stop_after_s: float | None = None, *,
                device: str = "") -> dict[str, float]:
    """Run ``channels`` simulated channels for ``sim_seconds`` (or until ``stop_after_s`` of
    wall time); return figures. ``device``: "recorded" attaches a simulated OSI device to
    every channel (its three signals recorded with each sample), "limited" also runs
    DEVICE_PLAN, which limits and ends steps on its signals."""
    path = tmp / f"runner-{next(_RUNS)}.db"  # a database of its own
    db = open_database(f"sqlite:///{path}")
    text = DEVICE_PLAN if device == "limited" else PLAN
    plan = parse_plan(text.format(half_hours=max(1, round(sim_seconds / 1800))), "bench.yaml")
    driver = SimChannels(SimChannelSettings(count=channels, seed=1, initial_soc=0.5))
    rig = SimOsiDevice()
    attached = (("rig", rig),) if device else ()
    writer = SampleWriter(db)
    runner = Runner(db, writer, clock, sample_period_s=period)

    async def main() -> None:
        await driver.open(clock)
        await rig.open(clock)
        requests = [TestRequest(ChannelRef(n + 1, driver, "sim", n), plan, devices=attached)
                    for n in range(channels)]
        if stop_after_s is not None:
            asyncio.get_running_loop().call_later(stop_after_s, runner.stop)
        await runner.run(requests)
        await rig.close()
        await driver.close()

    start = clock.now()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    asyncio.run(main())
    writer.close()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    latencies = writer.commit_latency_s()
    with sqlite3.connect(path) as check:
        stored = check.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    db.close()
    assert stored == runner.samples, (stored, runner.samples)
    plan_seconds = clock.now() - start if stop_after_s else \
        max(1, round(sim_seconds / 1800)) * 1800.0
    return {
        "channels": channels, "sim_s": plan_seconds, "wall_s": wall, "cpu_s": cpu,
        "samples": stored,
        "samples_per_s": stored / wall, "speed": plan_seconds / wall,
        "channel_s_per_s": channels * plan_seconds / wall, "overruns": runner.overruns,
        "latency_p50_s": statistics.median(latencies) if latencies else 0.0,
        "latency_p95_s": float(np.percentile(latencies, 95)) if latencies else 0.0,
        "latency_max_s": max(latencies) if latencies else 0.0,
    }


def sqlite_ceiling(tmp: Path) -> float:
    """Rows/s of plain sqlite3 executemany into cellbench's sample table, in key order."""
    rows = raw_rows(1000, 500)
    return bench_raw(tmp / "ceiling.db", [cellbench_samples_ddl(tmp)], rows, key_order=True)


def task_per_channel_vs_shared_loop(channels: int = 10_000, ticks: int = 50) -> tuple[float, float]:
    """Wall seconds per tick: one asyncio task per channel vs one loop over numpy arrays."""
    rng = np.random.default_rng(0)
    soc = rng.random(channels)
    current = np.full(channels, -1.0)

    async def per_channel() -> float:
        state = soc.tolist()
        tick = asyncio.Event()
        done = 0

        async def channel(i: int) -> None:
            nonlocal done
            for _ in range(ticks):
                await tick.wait()
                state[i] += -1.0 * 1.0 / 3600 / 2.5  # one coulomb-counting update
                voltage = 3.0 + 1.2 * state[i] - 0.03
                if voltage < 2.5:
                    state[i] = 0.0
                done += 1

        tasks = [asyncio.create_task(channel(i)) for i in range(channels)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        for _ in range(ticks):
            tick.set()
            await asyncio.sleep(0)
            tick.clear()
            while done % channels:
                await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*tasks)
        return elapsed / ticks

    async def shared() -> float:
        state = soc.copy()
        started = time.perf_counter()
        for _ in range(ticks):
            state += current * 1.0 / 3600 / 2.5
            voltage = 3.0 + 1.2 * state - 0.03
            state[voltage < 2.5] = 0.0
            await asyncio.sleep(0)
        return (time.perf_counter() - started) / ticks

    return asyncio.run(per_channel()), asyncio.run(shared())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ceiling = sqlite_ceiling(tmp)
        print(f"plain sqlite3 executemany ceiling: {ceiling:,.0f} rows/s "
              f"(cellbench's samples table, WAL, synchronous=NORMAL, key order)\n")
        print(f"{'channels':>9} {'sim time':>9} {'wall':>7} {'replay':>8} "
              f"{'channel-s/s':>12} {'samples/s':>10} {'of ceiling':>10} {'commit p50':>10}")
        for channels, sim_hours in ((1, 24.0), (100, 10.0), (1000, 1.0), (10_000, 0.5)):
            r = run_station(tmp, channels, sim_hours * 3600 * scale, 1.0, VirtualClock())
            print(f"{channels:>9,} {r['sim_s'] / 3600:>8.1f}h {r['wall_s']:>6.1f}s "
                  f"{r['speed']:>7,.0f}x {r['channel_s_per_s']:>12,.0f} "
                  f"{r['samples_per_s']:>10,.0f} {r['samples_per_s'] / ceiling:>9.0%} "
                  f"{r['latency_p50_s'] * 1e3:>8.0f}ms")
        print("\n1,000 channels served by a simulated OSI device (3 signals each sample):")
        baseline = 0.0
        for device, what in (("", "no device"), ("recorded", "its signals recorded"),
                             ("limited", "+ 2 signal limits, 1 signal end")):
            r = run_station(tmp, 1000, 3600 * scale, 1.0, VirtualClock(), device=device)
            ticks = r["sim_s"] / r["wall_s"]
            baseline = baseline or ticks
            print(f"  {what:<32} {r['wall_s']:>6.1f}s wall {ticks:>6.0f} ticks/s "
                  f"({ticks / baseline:.0%} of no device), {r['samples_per_s']:>9,.0f} samples/s")
        seconds = 60 * scale
        print(f"\n10,000 channels at 10 Hz on the real clock for {seconds:.0f} s ...")
        r = run_station(tmp, 10_000, 1800, 0.1, RealClock(), stop_after_s=seconds)
        cores = os.cpu_count() or 1
        print(f"  {r['samples_per_s']:,.0f} samples/s persisted, CPU {r['cpu_s'] / r['wall_s']:.0%}"
              f" of one core = {r['cpu_s'] / r['wall_s'] / cores:.0%} of {cores} cores, "
              f"{r['overruns']} late ticks, sample-to-commit p50 "
              f"{r['latency_p50_s'] * 1e3:.0f} ms, p95 {r['latency_p95_s'] * 1e3:.0f} ms, "
              f"max {r['latency_max_s'] * 1e3:.0f} ms")
        task, loop = task_per_channel_vs_shared_loop()
        print(f"\n10,000 channels, one tick: task per channel {task * 1e3:.1f} ms, shared numpy "
              f"loop {loop * 1e3:.2f} ms ({task / loop:.0f}x)")


if __name__ == "__main__":
    main()

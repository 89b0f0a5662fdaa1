"""A station with 20 climate chambers and 400 channels on the real clock: does it keep up?

Twenty emulated chambers — Binder (Modbus RTU over TCP), Weiss/Vötsch (SIMSERV) and ESPEC
(ASCII) in turn, each its plugin's emulator, all served by one subprocess on loopback, their
thermal models ``--speed`` times faster than the wall, each reply ``--reply-delay-ms`` late
(the emulators' "slow" fault; 0 by default) — hold 20 simulated channels each. Every channel
rests a few seconds, meets the others of its chamber at a chamber step (30 °C, stable for
5 s), then discharges. The station (built from its configuration with the installed plugins, as
``cellbench run`` builds one) samples every channel each ``--period`` on the real clock and
reads every chamber once a tick (twice while its channels wait for it), every sample committed
to SQLite.

Beside it, in the same run, the baseline: the same station and channels without chambers,
running the same plans without the chamber step.

For each, over ``--ticks`` ticks: how many ticks started late (more than 10 % of the period after
they were due; the runner's own count of ticks more than a period late), tick duration p50 /
p99 / max, how late ticks started (p99 / max), the CPU the station's process used; for the
station with chambers, each chamber read's round trip inside the station (p50 / p99 / max per
kind) and the emulators' CPU.

    uv run --all-packages python bench/bench_chambers_station.py [--ticks 60]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import cellbench_core.runner.engine as engine
from cellbench_binder.emulator import BinderEmulator, BinderModel
from cellbench_core.plan import parse_plan
from cellbench_core.plugins import loaded_plugins
from cellbench_core.runner import Runner
from cellbench_core.runner.state import RunState
from cellbench_core.runner.tick import tick
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import SampleWriter, open_database
from cellbench_espec.emulator import EspecEmulator
from cellbench_hal import ChamberState, RealClock
from cellbench_sdk.testing import free_port
from cellbench_simserv.emulator import SimservEmulator

KINDS = ("binder", "simserv", "espec")
#: A tick that starts later than this share of the period after it was due counts as late.
LATE_SHARE = 0.1


def chamber_settings(kind: str, port: int) -> dict[str, Any]:
    """The ``[chambers.settings]`` of a ``kind`` chamber whose controller listens on ``port``."""
    if kind == "simserv":
        return {"host": "127.0.0.1", "port": port}
    return {"address": f"127.0.0.1:{port}"}


async def _serve(kind: str, port: int, speed: float, delay_s: float) -> None:
    """Serve one emulated ``kind`` controller on ``port`` until cancelled, each reply
    ``delay_s`` late (its emulator's "slow" fault)."""
    emulator: Any
    if kind == "binder":
        emulator = BinderEmulator("127.0.0.1", port, model=BinderModel(speed=speed))
        emulator.faults.slow_s = delay_s
        await emulator.start()
    elif kind == "simserv":
        emulator = SimservEmulator(port=port, speed=speed)
        emulator.faults.delay_s = delay_s
        await emulator.start()
    else:
        emulator = EspecEmulator(speed=speed)
        emulator.faults.slow_s = delay_s
        await emulator.start("127.0.0.1", port)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def _emulate(chambers: list[tuple[str, int]], speed: float, delay_s: float) -> None:
    """Serve every chamber's emulator, one event loop for all, until killed."""

    async def main() -> None:
        await asyncio.gather(*(_serve(kind, port, speed, delay_s) for kind, port in chambers))

    asyncio.run(main())


def _wait_listening(ports: list[int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no emulator listens on port {port}") from None
                time.sleep(0.05)


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plan(number: int, chamber: bool) -> str:
    step = "  - {chamber: 30 °C, within: 1 K, stable: 5 s, timeout: 10 min}\n" if chamber else ""
    return (f"name: bench\ncapacity: 2.5 Ah\nsteps:\n  - Rest for {number % 5 + 1} s\n{step}"
            f"  - Discharge at 0.2C for 10 h\n")


@dataclass
class Figures:
    """What one station run measured."""

    starts: list[float] = field(default_factory=list)  # perf_counter at each tick's start
    durations: list[float] = field(default_factory=list)  # seconds each tick took
    waiting: list[bool] = field(default_factory=list)  # whether channels waited for chambers
    reads: dict[str, list[float]] = field(default_factory=dict)  # kind -> read round trips
    overruns: int = 0
    samples: int = 0
    stored: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    emulator_cpu_s: float = 0.0
    chamber_steps_done: int = 0


def lateness(starts: list[float], period: float) -> np.ndarray:
    """How late each tick started after it was due, on the runner's schedule: one period after
    the one before, or at once when that is more than a period past."""
    late, due = [], starts[0]
    for start in starts:
        if start - due > period:
            due = start
        late.append(start - due)
        due += period
    return np.array(late)


#: The runner's own tick, which the benchmark puts in the runner's place wrapped (timed).
TICK = tick


def timed_tick(figures: Figures) -> Callable[[RunState], Coroutine[Any, Any, None]]:
    """The runner's tick, noting when each started and how long it took."""

    async def timed(st: RunState) -> None:
        start = time.perf_counter()
        figures.starts.append(start)
        figures.waiting.append(bool(st.waits))
        await TICK(st)
        figures.durations.append(time.perf_counter() - start)

    return timed


def timed_read(kind: str, read: Callable[[], Awaitable[ChamberState]], figures: Figures
               ) -> Callable[[], Awaitable[ChamberState]]:
    """A chamber's ``read``, noting each round trip."""
    times = figures.reads.setdefault(kind, [])

    async def timed() -> ChamberState:
        start = time.perf_counter()
        try:
            return await read()
        finally:
            times.append(time.perf_counter() - start)

    return timed


def run_station(directory: Path, args: argparse.Namespace,
                chambers: list[tuple[str, int]], emulator_pid: int | None) -> Figures:
    """Run the station (with ``chambers``, or none) for ``args.ticks`` ticks; its figures."""
    figures = Figures()
    per_chamber = args.channels // max(1, len(chambers))
    config = station_from_dict({
        "station": {"name": "bench", "database": f"sqlite:///{directory / 'station.db'}",
                    "sample_period": f"{args.period:g} s"},
        "channels": [{"driver": "sim", "settings": {"count": args.channels}}],
        "chambers": [{"kind": kind, "name": f"c{n}",
                      "channels": f"{n * per_chamber + 1}-{(n + 1) * per_chamber}",
                      "settings": chamber_settings(kind, port)}
                     for n, (kind, port) in enumerate(chambers)],
    }, "bench")
    plugins = loaded_plugins().view()
    station = Station(config, plugins)
    db = open_database(config.station.database)
    writer = SampleWriter(db)
    clock = RealClock()
    runner = Runner(db, writer, clock, sample_period_s=args.period, hooks=plugins.hook,
                    station=config.station.name, device_timeout_s=config.station.device_timeout)
    plans = {n: parse_plan(plan(n, bool(chambers)), "bench.yaml") for n in range(5)}

    async def main() -> None:
        await station.open(clock)
        try:
            for section, chamber in station.chambers:
                chamber.read = timed_read(  # type: ignore[method-assign,assignment]
                    section.kind, chamber.read, figures)
            requests = [station.request(ref, plans[ref.number % 5]) for ref in station.channels]
            task = asyncio.create_task(runner.run(requests))
            while runner.ticks < 1:
                await asyncio.sleep(0.01)
            started, cpu = time.perf_counter(), time.process_time()
            emulated = _cpu_s(emulator_pid) if emulator_pid else 0.0
            while runner.ticks < args.ticks + 1:
                await asyncio.sleep(0.01)
            figures.wall_s = time.perf_counter() - started
            figures.cpu_s = time.process_time() - cpu
            if emulator_pid:
                figures.emulator_cpu_s = _cpu_s(emulator_pid) - emulated
            runner.stop(None, "benchmark over")
            await task
        finally:
            await station.close()

    engine.tick = timed_tick(figures)  # type: ignore[attr-defined,assignment]
    try:
        asyncio.run(main())
    finally:
        engine.tick = TICK  # type: ignore[attr-defined]
        writer.close()
    figures.overruns, figures.samples = runner.overruns, runner.samples
    with db.engine.connect() as connection:
        figures.stored = connection.exec_driver_sql("SELECT COUNT(*) FROM samples").scalar_one()
        figures.chamber_steps_done = connection.exec_driver_sql(
            "SELECT COUNT(*) FROM steps WHERE end_reason = 'chamber stable'").scalar_one()
    db.close()
    return figures


def ms(values: list[float] | np.ndarray, q: float) -> str:
    return f"{np.quantile(np.asarray(values), q) * 1e3:7.2f}"


def report(name: str, figures: Figures, period: float, ticks: int) -> None:
    # The first tick (all tests starting) and the last (all stopping) are not steady state.
    starts, durations = figures.starts[1:ticks + 1], figures.durations[1:ticks + 1]
    late = lateness(starts, period)
    count = int((late > LATE_SHARE * period).sum())
    print(f"{name:<16} {len(durations):>5} {count:>5} {figures.overruns:>8} "
          f"{ms(durations, 0.5)} {ms(durations, 0.99)} {max(durations) * 1e3:7.2f} "
          f"{ms(late, 0.99)} {late.max() * 1e3:7.2f} "
          f"{figures.cpu_s / figures.wall_s:6.1%} {figures.samples:>8,} {figures.stored:>8,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=60, help="ticks measured per station")
    parser.add_argument("--chambers", type=int, default=20)
    parser.add_argument("--channels", type=int, default=400)
    parser.add_argument("--period", type=float, default=1.0, help="sample period, s")
    parser.add_argument("--speed", type=float, default=60.0,
                        help="how much faster than the wall the chambers' models run")
    parser.add_argument("--reply-delay-ms", type=float, default=0.0,
                        help="every controller answers each request this much later, as over "
                             "a serial line (the emulators' 'slow' fault)")
    args = parser.parse_args()
    if args.channels % args.chambers:
        parser.error("--channels must be a multiple of --chambers")
    chambers = [(KINDS[n % len(KINDS)], free_port()) for n in range(args.chambers)]
    emulator = multiprocessing.Process(
        target=_emulate, args=(chambers, args.speed, args.reply_delay_ms / 1e3), daemon=True)
    emulator.start()
    try:
        _wait_listening([port for _, port in chambers])
        assert emulator.pid is not None
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            (root / "baseline").mkdir()
            (root / "chambers").mkdir()
            baseline = run_station(root / "baseline", args, [], None)
            loaded = run_station(root / "chambers", args, chambers, emulator.pid)
    finally:
        emulator.kill()
        emulator.join()
    print(f"{args.channels} simulated channels, sample period {args.period:g} s, real clock, "
          f"{args.ticks} ticks measured; a tick is late when it starts more than "
          f"{LATE_SHARE * args.period * 1e3:g} ms after it was due")
    print(f"{'station':<16} {'ticks':>5} {'late':>5} {'overrun':>8} {'tick p50':>7} "
          f"{'p99':>7} {'max ms':>7} {'late p99':>7} {'max ms':>7} {'CPU':>6} {'samples':>8} "
          f"{'stored':>8}")
    report("no chambers", baseline, args.period, args.ticks)
    report(f"{args.chambers} chambers", loaded, args.period, args.ticks)
    base = np.quantile(baseline.durations[1:args.ticks + 1], 0.99)
    with_chambers = np.quantile(loaded.durations[1:args.ticks + 1], 0.99)
    print(f"tick p99 with chambers / without: {with_chambers / base:.1f}x; CPU "
          f"{loaded.cpu_s / loaded.wall_s:.1%} against {baseline.cpu_s / baseline.wall_s:.1%} "
          f"of one core; the emulators' process {loaded.emulator_cpu_s / loaded.wall_s:.1%}")
    print(f"chamber steps done: {loaded.chamber_steps_done} of {args.channels} channels")
    measured = slice(1, args.ticks + 1)
    for phase, wanted in (("while channels waited for their chambers", True),
                          ("with no chamber wait", False)):
        durations = [d for d, waiting in zip(loaded.durations[measured],
                                             loaded.waiting[measured], strict=True)
                     if waiting is wanted]
        if durations:
            print(f"  {len(durations):>3} ticks {phase}: p50 {ms(durations, 0.5)} ms, "
                  f"max {max(durations) * 1e3:7.2f} ms")
    print(f"chamber read round trip inside the station, ms ({args.speed:g}x emulators, "
          f"replies {args.reply_delay_ms:g} ms late):")
    everything = [t for times in loaded.reads.values() for t in times]
    for kind, times in [*sorted(loaded.reads.items()), ("all", everything)]:
        print(f"  {kind:<8} {len(times):>6} reads  p50 {ms(times, 0.5)}  p99 {ms(times, 0.99)}"
              f"  max {max(times) * 1e3:7.2f}")


if __name__ == "__main__":
    main()

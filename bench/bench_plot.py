"""Plots of long tests and the ageing cell model: figures and ratios against baselines measured
in the same run.

* ``cellbench plot TEST`` of a test of N samples (1 s apart, cycling waveforms; one aux
  signal): reading and drawing as plot.py did before issue 19 (every sample of U, I, T read
  with ``Database.samples`` and drawn) against the decimated read (min/max buckets aggregated
  in the database) and drawing of at most 4000 points per signal.
* ``cellbench plot TEST --cycles`` of a test of 1000 cycles.
* One ``CellBank.advance`` of 1,000 and 10,000 cells with and without ageing.
* ``cellbench demo --cycles 200`` (8 channels, 60 s samples) end to end, as a process.

    uv run --all-packages python bench/bench_plot.py [--quick]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cellbench_core.plots import (
    SignalSeries,
    cycle_series,
    draw_cycles,
    draw_signals,
    signal_series,
)
from cellbench_core.storage import (
    Database,
    SampleRows,
    SampleWriter,
    StepRow,
    TestStart,
    open_database,
)
from cellbench_sdk.cell import CellBank, CellParameters, Mode, OutputRange, Setpoints

BATCH = 100_000
STEP_S = 3000  # a step of the written tests: 50 minutes


def write_test(db: Database, samples: int, step_s: int = STEP_S) -> int:
    """A test of ``samples`` samples 1 s apart: steps of ``step_s`` alternating charge and
    discharge (two steps a cycle) and an aux temperature on every tenth sample."""
    [test_id] = db.start_tests([TestStart(
        name=f"bench {samples}", channel="bench/0", driver="bench", battery=None,
        plan_name="bench", plan_source="bench", plan_text="", sample_period_s=1.0,
        station="bench", start_unix_s=1.7e9)])
    writer = SampleWriter(db)
    for start in range(1, samples + 1, BATCH):
        seq = np.arange(start, min(start + BATCH, samples + 1), dtype=np.int64)
        t = (seq - 1).astype(np.float64)
        step = (seq - 1) // step_s
        phase = (t % step_s) / step_s
        charging = step % 2 == 0
        current = np.where(charging, 2.5, -2.5)
        voltage = np.where(charging, 3.4 + 0.8 * phase, 4.2 - 0.9 * phase)
        voltage += 0.002 * np.sin(t / 7.0)  # noise a decimation must not smooth away
        ones = np.ones(len(seq), dtype=np.int64)
        writer.submit(SampleRows(
            test_id=ones * test_id, seq=seq, test_time_s=t, unix_time_s=1.7e9 + t,
            step_time_s=t % step_s, voltage_v=voltage, current_a=current,
            power_w=voltage * current, temperature_c=25.0 + 3.0 * phase,
            step_index=(step % 2).astype(np.int64), plan_line=ones * 3,
            cycle=(step // 2 + 1).astype(np.int64), ah=current * (t % step_s) / 3600.0,
            wh=voltage * current * (t % step_s) / 3600.0,
            aux={"probe_c": np.where(seq % 10 == 0, 24.0 + phase, np.nan)}))
    for n in range((samples + step_s - 1) // step_s):
        first, last = n * step_s + 1, min((n + 1) * step_s, samples)
        sign = 1.0 if n % 2 == 0 else -1.0
        ah = sign * 2.5 * (last - first + 1) / 3600.0
        writer.submit_step(StepRow(
            test_id=test_id, step_no=n + 1, step_index=n % 2, plan_line=3, cycle=n // 2 + 1,
            mode="cc", text="step", start_seq=first, end_seq=last,
            start_test_time_s=float(first - 1), end_test_time_s=float(last), ah=ah,
            wh=3.7 * ah, end_reason=f"step_time >= {step_s} s",
            charge_ah=max(ah, 0.0), discharge_ah=max(-ah, 0.0),
            charge_wh=max(3.7 * ah, 0.0), discharge_wh=max(-3.7 * ah, 0.0),
            temperature_min_c=25.0, temperature_max_c=28.0))
    writer.close()
    return test_id


def plot_as_before(db: Database, test_id: int, output: Path) -> None:
    """What ``cellbench plot`` did before issue 19: every sample read and drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = db.samples(test_id, ["test_time_s", "voltage_v", "current_a", "temperature_c"])
    hours = data["test_time_s"] / 3600.0
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5), constrained_layout=True)
    for ax, column in zip(axes, ("voltage_v", "current_a", "temperature_c"), strict=True):
        ax.plot(hours, data[column], linewidth=0.8)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def bench_plot_of(folder: Path, samples: int) -> None:
    """One row of the plot table: a test of ``samples`` samples drawn before and now."""
    db = open_database(f"sqlite:///{folder / f'plot-{samples}.db'}")
    test_id = write_test(db, samples)
    before = timed(lambda: plot_as_before(db, test_id, folder / "before.png"))
    series: list[SignalSeries] = []

    def plot_now() -> None:
        series.append(signal_series(db, test_id))
        draw_signals(series[-1:], folder / "now.png")

    now = timed(plot_now)
    points = len(series[-1].time_s)
    with_aux = timed(lambda: draw_signals([signal_series(
        db, test_id, ["U", "I", "T", "probe_c"])], folder / "aux.png"))
    print(f"{samples:>10,} {before:>8.2f}s {now:>8.2f}s {before / now:>8.1f}x {points:>13,} "
          f"{with_aux:>8.2f}s")
    db.close()


def bench_plots(folder: Path, sizes: list[int]) -> None:
    print("cellbench plot TEST (U, I, T over the whole test), PNG")
    print(f"{'samples':>10} {'before':>9} {'now':>9} {'speed-up':>9} {'points drawn':>13} "
          f"{'now + aux':>9}")
    for samples in sizes:
        bench_plot_of(folder, samples)
    db = open_database(f"sqlite:///{folder / 'cycles.db'}")
    test_id = write_test(db, 1000 * 2 * 300, step_s=300)  # 1000 cycles of 10 minutes
    cycles = timed(lambda: draw_cycles([cycle_series(db, test_id)], folder / "fade.png"))
    print(f"cellbench plot TEST --cycles, 1000 cycles: {cycles:.2f}s")
    db.close()


def bench_ageing(calls: int, rounds: int = 5) -> None:
    """Time per CellBank.advance with and without ageing: the best of ``rounds`` interleaved
    rounds of ``calls`` calls each (the machine is shared; the minimum is the least disturbed)."""
    print("CellBank.advance, per call (best of interleaved rounds)")
    limits = OutputRange(0.0, 5.0, 10.0)
    for count in (1_000, 10_000):
        banks = {}
        for ageing in ("none", "default"):
            bank = CellBank(count, CellParameters.model_validate({"ageing": ageing}))
            sp = Setpoints.rest(count)
            sp.mode[:] = Mode.CC
            sp.current_a[:] = -0.001  # slow enough for any number of calls
            banks[ageing] = (bank, sp)
        best = {"none": math.inf, "default": math.inf}
        for _ in range(rounds):
            for ageing, (bank, sp) in banks.items():

                def advance(bank: CellBank = bank, sp: Setpoints = sp) -> None:
                    for _ in range(calls):
                        bank.advance(1.0, sp, limits)

                best[ageing] = min(best[ageing], timed(advance) / calls)
        print(f"  {count:>6,} cells: without ageing {best['none'] * 1e6:7.1f} µs, "
              f"with {best['default'] * 1e6:7.1f} µs ({best['default'] / best['none']:.2f}x)")


def bench_demo(folder: Path) -> None:
    db = f"sqlite:///{folder / 'demo.db'}"
    command = [str(Path(sys.executable).parent / "cellbench"), "demo", "--cycles", "200",
               "--db", db, "--fade-plot", str(folder / "fade.png")]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=folder)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout, result.stderr)
        raise SystemExit("the demo failed")
    lines = [line for line in result.stdout.splitlines() if "samples in" in line]
    print(f"cellbench demo --cycles 200 (8 channels): {wall:.1f}s wall as a process; "
          f"{lines[0].strip() if lines else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller tests, no demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        bench_plots(folder, [100_000, 1_000_000] if args.quick else
                    [100_000, 1_000_000, 5_000_000])
        bench_ageing(200 if args.quick else 1000)
        if not args.quick:
            bench_demo(folder)


if __name__ == "__main__":
    main()

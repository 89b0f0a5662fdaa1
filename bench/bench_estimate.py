"""Estimate benchmark: ``cellbench plan estimate`` beside the runner's replay of the same plans.

For each golden plan, the wall time of the estimate (the runner on the sim plugin's bulk
channel) and of the replay (the runner on the plain simulated channel, one sample per period),
both with the same cell and sample period in this run, and how far the estimated duration is
from the replayed one. Then the 1,000-cycle 1C cycle-life plan (the demo's, a 2.5 Ah NMC cell,
sampled every second): its estimate, and its replay extrapolated from a 20-cycle replay (the
full replay would take most of an hour), with the estimate of the same 20 cycles beside it.

    uv run python bench/bench_estimate.py [--quick]

Target (issue 21): the 1,000-cycle plan estimated in under 10 s; estimates within 2 % of the
replay.
"""

from __future__ import annotations

import argparse
import re
import time
from importlib import resources
from pathlib import Path

from cellbench_core.estimate import Cell, Estimate, estimate
from cellbench_core.plan import Plan, load_plan, parse_plan
from cellbench_core.plan.tables import lookup_tables
from cellbench_core.plugins import PluginManager, loaded_plugins

ROOT = Path(__file__).resolve().parents[1]
#: Golden plans and the sample period each is run at (the shortest steps need it).
GOLDEN = [("tests/plans/short.yaml", 1.0), ("tests/plans/long.yaml", 1.0),
          ("plans/capacity-check.yaml", 1.0), ("plans/hppc.yaml", 1.0),
          ("plans/measured-rates.yaml", 1.0), ("plans/gitt.yaml", 1.0),
          ("plans/drive-cycle.yaml", 1.0)]


def cycle_life(cycles: int) -> Plan:
    """The demo's 1C cycle-life plan of a 2.5 Ah NMC cell with ``cycles`` cycles."""
    text = resources.files("cellbench_core.demo").joinpath("cycle-life.yaml").read_text(
        encoding="utf-8")
    text = re.sub(r"^(  - repeat: )\d+$", rf"\g<1>{cycles}", text, flags=re.MULTILINE)
    return parse_plan(text, source=f"cycle-life-{cycles}.yaml")


def timed(plan: Plan, plugins: PluginManager, period_s: float, replay: bool
          ) -> tuple[Estimate, float]:
    started = time.perf_counter()
    result = estimate(plan, plugins, Cell(2.5), period_s=period_s, replay=replay)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the golden plans at a 10 s period, 100 cycles (a smoke test)")
    args = parser.parse_args()
    plugins = loaded_plugins()
    tables = lookup_tables(plugins.registry)
    scale = 10.0 if args.quick else 1.0
    timed(cycle_life(1), plugins, 1.0, False)  # imports and the first database, not counted
    print(f"{'plan':<28} {'period':>6} {'duration':>10} {'estimate':>9} {'replay':>9} "
          f"{'faster':>7} {'difference':>10} {'samples est/replay':>20}")
    for name, period in GOLDEN:
        plan = load_plan(ROOT / name, tables=tables)
        found, est_s = timed(plan, plugins, period * scale, False)
        reference, replay_s = timed(plan, plugins, period * scale, True)
        diff = found.duration_s / reference.duration_s - 1.0
        print(f"{Path(name).name:<28} {period * scale:>5g}s {found.duration_s / 3600:>9.2f}h "
              f"{est_s:>8.2f}s {replay_s:>8.2f}s {replay_s / est_s:>6.0f}x {diff:>+9.3%} "
              f"{found.samples:>9,}/{reference.samples:<10,}")
    cycles = 100 if args.quick else 1000
    found, est_s = timed(cycle_life(cycles), plugins, 1.0, False)
    short, short_s = timed(cycle_life(20), plugins, 1.0, False)
    reference, replay_s = timed(cycle_life(20), plugins, 1.0, True)
    extrapolated = replay_s * cycles / 20
    print(f"\n{cycles:,}-cycle 1C cycle life, 2.5 Ah NMC, 1 s period: estimate {est_s:.1f} s "
          f"({found.duration_s / 86_400:,.1f} days simulated, {len(found.cycles)} cycles, "
          f"capacity {found.cycles[0].discharge_ah:.3f} -> {found.cycles[-1].discharge_ah:.3f} "
          f"Ah)")
    print(f"  20 cycles: estimate {short_s:.2f} s, replay {replay_s:.1f} s (difference "
          f"{short.duration_s / reference.duration_s - 1:+.3%}); the replay of {cycles:,} "
          f"cycles extrapolated: {extrapolated / 60:.0f} min, {extrapolated / est_s:,.0f}x the "
          "estimate")


if __name__ == "__main__":
    main()

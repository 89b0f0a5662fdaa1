"""What a plan will do before a cell is touched: ``cellbench plan estimate``.

The plan runs in the real :class:`~cellbench_core.runner.Runner` (its end conditions, limits,
loops, set steps and counters: nothing is interpreted a second time here) on the sim plugin's
``sim-bulk`` channel, one simulated cell fitted to the battery on a virtual clock. That channel
computes whole steps in bulk up to the sample at which the step's own end conditions or the
limits would hold (see :mod:`cellbench_sim.bulk`), so a step costs the runner a few samples,
not one per sample period. What the test measured is then read back like any test's: its
steps and cycles from a scratch database.
"""

from __future__ import annotations

import asyncio
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cellbench_core.descriptors import Kind
from cellbench_core.events import StepChanged
from cellbench_core.plan.model import Loop, Node, Plan, Quantity, StepSpec
from cellbench_core.plan.normalise import end_reason
from cellbench_core.plugins import PluginError, PluginManager
from cellbench_core.runner import ChannelRef, RunError, Runner, TestRequest
from cellbench_core.storage import BatteryRecord, Database, SampleRows, SampleWriter
from cellbench_core.storage.database import open_database
from cellbench_hal import VirtualClock
from cellbench_hal.types import IntArray

#: The channel driver the estimate runs on (the sim plugin's), and the one a replay runs on.
DRIVER = "sim-bulk"
REPLAY_DRIVER = "sim"
#: Chemistries the simulated cell has, by words a battery's chemistry may contain.
_CHEMISTRY_WORDS = {"lfp": "lfp", "lifepo": "lfp", "nmc": "nmc", "nca": "nmc", "lco": "nmc"}
#: Battery metadata keys that give the cell's series resistance (Ω), first found wins.
RESISTANCE_KEYS = ("r0_ohm", "resistance_ohm", "internal_resistance_ohm")


class EstimateError(ValueError):
    """The plan cannot be estimated (what and where is in the message)."""


@dataclass(frozen=True)
class Cell:
    """The simulated cell the plan runs on."""

    capacity_ah: float
    chemistry: str = "nmc"
    temperature_c: float = 25.0
    r0_ohm: float | None = None

    @classmethod
    def of_battery(cls, battery: BatteryRecord, temperature_c: float = 25.0) -> Cell:
        """The cell a registered battery describes: capacity, chemistry and (from its
        metadata, see :data:`RESISTANCE_KEYS`) resistance."""
        chemistry = chemistry_of(battery.chemistry)
        if chemistry is None:
            raise EstimateError(
                f"battery {battery.name!r}: chemistry {battery.chemistry!r} is not one the "
                f"simulated cell has (nmc or lfp); give --capacity and --chemistry instead")
        r0 = next((float(battery.metadata[k]) for k in RESISTANCE_KEYS
                   if k in battery.metadata), None)
        if r0 is not None and not (math.isfinite(r0) and r0 > 0):
            raise EstimateError(f"battery {battery.name!r}: metadata resistance {r0!r} Ω is "
                                "not a positive number")
        return cls(battery.nominal_capacity_ah, chemistry, temperature_c, r0)

    def settings(self) -> dict[str, Any]:
        """The simulated channel's settings for this cell: one nominal cell, no spread."""
        settings: dict[str, Any] = {
            "count": 1, "capacity_ah": self.capacity_ah, "chemistry": self.chemistry,
            "ambient_c": self.temperature_c, "capacity_spread": 0.0, "resistance_spread": 0.0}
        if self.r0_ohm is not None:
            settings["r0_ohm"] = self.r0_ohm
        return settings


def chemistry_of(text: str) -> str | None:
    """The simulated chemistry a battery's chemistry text names (``NMC-graphite``: nmc)."""
    words = re.findall(r"[a-z]+", text.lower())
    return next((_CHEMISTRY_WORDS[w] for w in words if w in _CHEMISTRY_WORDS), None)


@dataclass(frozen=True)
class Phase:
    """A top-level step or loop of the plan and how long it takes."""

    line: int
    text: str
    duration_s: float


@dataclass(frozen=True)
class CycleCapacity:
    """What one cycle charged and discharged (Ah), and how long it took."""

    cycle: int
    charge_ah: float
    discharge_ah: float
    duration_s: float


@dataclass(frozen=True)
class Estimate:
    """What running the plan would do: how long, how it ends, what it measures."""

    plan: str
    duration_s: float
    status: str  # finished, stopped (a limit, an external step) or failed
    reason: str
    steps: int
    phases: list[Phase]
    cycles: list[CycleCapacity]
    warnings: list[str] = field(default_factory=list)
    samples: int = 0

    def as_json(self) -> dict[str, Any]:
        """The estimate as plain JSON values (what ``--json`` prints)."""
        return {
            "plan": self.plan, "duration_s": self.duration_s, "status": self.status,
            "reason": self.reason, "steps": self.steps, "cycles": len(self.cycles),
            "capacities": [{"cycle": c.cycle, "charge_ah": c.charge_ah,
                            "discharge_ah": c.discharge_ah, "duration_s": c.duration_s}
                           for c in self.cycles],
            "phases": [{"line": p.line, "text": p.text, "duration_s": p.duration_s}
                       for p in self.phases],
            "warnings": self.warnings}


def estimate(plan: Plan, plugins: PluginManager, cell: Cell, *,
             battery: BatteryRecord | None = None, period_s: float = 1.0,
             max_duration_s: float = 10 * 365 * 86_400.0, max_samples: int = 500_000,
             then: Callable[[Database, int], None] | None = None,
             trace: bool = False, replay: bool = False) -> Estimate:
    """Run ``plan`` on a simulated ``cell`` (under ``battery``'s limits, if given) sampled
    every ``period_s``, and say what it did; ``then`` is called with the scratch database and
    the test's id before it goes (to draw the curves: ``trace`` samples them more finely).
    A test longer than ``max_duration_s``, or an estimate that took more than
    ``max_samples`` samples, is stopped there, with a warning. With ``replay``
    the plan runs on the sim plugin's plain channel instead, one sample every period: what
    the estimate is checked against (tests/test_plan_estimate.py, bench/bench_estimate.py)."""
    if not (math.isfinite(period_s) and period_s > 0):
        raise EstimateError(f"the sample period must be a positive number of seconds, not "
                            f"{period_s!r}")
    chamber = next((s for s in _steps(plan.steps) if s.chamber is not None), None)
    if chamber is not None:
        raise EstimateError(f"{plan.source}:{chamber.line}: a chamber step; plans with chamber "
                            "steps cannot be estimated (the chamber's behaviour is not modelled)")
    name = REPLAY_DRIVER if replay else DRIVER
    try:
        descriptor = plugins.registry.get(Kind.CHANNEL_DRIVER, name)
    except PluginError as err:
        raise EstimateError(f"estimating needs the sim plugin's {name!r} channel "
                            f"(cellbench-sim): {err}") from None
    settings = cell.settings() if replay else {
        **cell.settings(), "period_s": period_s, "trace": trace}
    try:
        driver = descriptor.create(settings)
    except ValueError as err:
        raise EstimateError(f"the simulated cell: {err}") from None
    external = {s.line: s for s in _steps(plan.steps) if s.external is not None}
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cellbench-estimate-") as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'estimate.db'}")
        try:
            if battery is not None:  # the test refers to it
                db.add_battery(**{f.name: getattr(battery, f.name) for f in fields(battery)
                                  if f.name != "id"})
                battery = db.battery(battery.name)
            writer = SampleWriter(db)
            clock = VirtualClock()
            runner: Runner
            stopped: list[str] = []

            def on_event(event: object) -> None:
                if isinstance(event, StepChanged) and event.plan_line in external:
                    warnings.append(f"line {event.plan_line}: an external step (a superior system "
                                    "drives it): the estimate ends before it")
                    runner.stop(None, f"external step at line {event.plan_line}: not estimated")

            def observe(_channels: IntArray, batch: SampleRows) -> None:
                if len(batch.test_time_s) and batch.test_time_s[-1] > max_duration_s:
                    give_up(f"longer than {max_duration_s / 86_400:g} days")
                elif runner.samples > max_samples and not replay:
                    give_up(f"{max_samples:,} samples: the plan's steps end on what only the "
                            "runner counts (a cycle's or the test's totals, a device signal), "
                            "run one sample period at a time")

            def give_up(why: str) -> None:
                if not stopped:
                    stopped.append(why)
                    warnings.append(f"the estimate stopped the test after {why}")
                    runner.stop(None, f"estimate stopped: {why}")

            runner = Runner(db, writer, clock, sample_period_s=period_s, on_event=on_event,
                            station="estimate")
            runner.observer = observe
            request = TestRequest(ChannelRef(1, driver, name, 0), plan, battery,
                                  name=f"estimate of {plan.name}")

            async def run() -> None:
                await driver.open(clock)
                try:
                    await runner.run([request])
                finally:
                    await driver.close()

            try:
                asyncio.run(run())
            except RunError as err:
                raise EstimateError(str(err)) from None
            finally:
                writer.close()
            status = runner.latest(1)
            assert status is not None and status.outcome is not None
            result = _read(db, plan, status.test_id, status.outcome.status.value,
                           status.outcome.reason, warnings, runner.samples)
            if then is not None:
                then(db, status.test_id)
        finally:
            db.close()
    return result


def _read(db: Database, plan: Plan, test_id: int, status: str, reason: str,
          warnings: list[str], samples: int) -> Estimate:
    """The estimate from the test's records in ``db``."""
    steps = db.steps(test_id)
    duration = max((s.end_test_time_s for s in steps), default=0.0)
    specs = {s.line: s for s in _steps(plan.steps)}
    warnings = list(warnings)
    timeouts: dict[int, list[str]] = {}
    runs: dict[int, int] = {}
    for s in steps:
        runs[s.plan_line] = runs.get(s.plan_line, 0) + 1
        spec = specs.get(s.plan_line)
        if spec is not None and _on_timeout(spec, s.end_reason):
            timeouts.setdefault(s.plan_line, []).append(s.end_reason)
    for line, reasons in sorted(timeouts.items()):
        spec = specs[line]
        warnings.append(f"line {line} ({spec.label or spec.text}): ended on its time limit "
                        f"({reasons[0]}) instead of its own condition in {len(reasons)} of "
                        f"{runs[line]} runs")
    if status != "finished" and not reason.startswith(("external step", "estimate stopped")):
        where = steps[-1] if steps else None
        at = f" at {_hours(duration)}" + (f", in line {where.plan_line} ({where.text})"
                                          if where else "")
        warnings.append(f"the test would end {status}{at}: {reason}")
    cycles = [CycleCapacity(c.cycle, c.charge_ah, c.discharge_ah, c.duration_s)
              for c in db.cycles(test_id) if c.cycle > 0]
    return Estimate(plan.name, duration, status, reason, len(steps),
                    _phases(plan, steps), cycles, warnings, samples)


def _on_timeout(spec: StepSpec, reason: str) -> bool:
    """Whether a step of ``spec`` that ended for ``reason`` ended on a group of time
    conditions alone while it has others (its own conditions)."""
    timed = [g for g, group in enumerate(spec.until)
             if all(c.quantity is Quantity.STEP_TIME for c in group)]
    if not timed or len(timed) == len(spec.until):
        return False
    return any(reason == end_reason(spec, g) for g in timed)


def _phases(plan: Plan, steps: list[Any]) -> list[Phase]:
    """The duration of each top-level step or loop of ``plan`` that ran."""
    nodes = [(node.line, _describe(node)) for node in plan.steps
             if isinstance(node, StepSpec | Loop)]
    totals = [0.0] * len(nodes)
    ran = [False] * len(nodes)
    lines = [line for line, _ in nodes]
    for s in steps:
        k = _last_at_or_before(lines, s.plan_line)
        if k >= 0:
            totals[k] += s.end_test_time_s - s.start_test_time_s
            ran[k] = True
    return [Phase(line, text, total) for (line, text), total, did in
            zip(nodes, totals, ran, strict=True) if did]


def _last_at_or_before(lines: list[int], line: int) -> int:
    k = -1
    for n, start in enumerate(lines):
        if start <= line:
            k = n
    return k


def _describe(node: StepSpec | Loop) -> str:
    if isinstance(node, StepSpec):
        return node.label or node.text
    times = "until its condition" if node.count is None else f"{node.count} times"
    return f"repeat {times}: {len(list(_steps(node.body)))} steps"


def _steps(nodes: tuple[Node, ...]) -> Iterator[StepSpec]:
    """Every step of ``nodes``, loops' bodies included, in plan order."""
    for node in nodes:
        if isinstance(node, StepSpec):
            yield node
        elif isinstance(node, Loop):
            yield from _steps(node.body)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"

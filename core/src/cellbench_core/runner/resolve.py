"""A plan resolved for one test: every step's setpoint and end thresholds for the battery and
channel, checked against the channel's ranges and the safety limits before anything runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cellbench_core.plan.expr import Computed, ExprError, Scope, resolve
from cellbench_core.plan.model import (
    Amount,
    Condition,
    Op,
    Quantity,
    Signal,
    StepSpec,
    Value,
)
from cellbench_core.plan.program import LoopEnd, Program
from cellbench_core.runner.conditions import SIGNAL_SLOTS
from cellbench_core.runner.limits import beyond_limits, extremes, limit_bounds
from cellbench_core.runner.records import Resolved, RunError, TestRequest
from cellbench_core.units import Dimension, UnitError, parse_quantity
from cellbench_hal import Profile, Step, StepLimits


def resolve_plan(req: TestRequest, program: Program, capacity: float | None,
                 variables: Mapping[str, float] | None = None
                 ) -> tuple[dict[int, Resolved], list[float], list[float]]:
    """Every step of ``program`` and the limits, resolved with ``capacity`` for C-rates and
    the ``variables`` set so far, and checked against the channel's ranges and the limits;
    RunError if one does not fit. A step reading a variable not set yet is left out (it is
    resolved once a set step sets it). Needs no runner: ``cellbench plan check --station``
    uses it on unopened channels."""
    plan, battery = req.plan, req.battery
    where = f"{plan.source}"
    if len(plan_signals(program)) > SIGNAL_SLOTS:
        raise RunError(f"{where}: the plan ends steps on more than {SIGNAL_SLOTS} different "
                       "signals")
    for ins in program.instructions:
        if not isinstance(ins, StepSpec) or ins.chamber is None:
            continue
        if req.chamber is None:
            raise RunError(f"{where}:{ins.line}: a chamber step, but channel "
                           f"{req.channel.name} has no climate chamber")
        if ins.chamber.humidity_pct is not None and not req.chamber.has_humidity:
            raise RunError(f"{where}:{ins.line}: the chamber of channel "
                           f"{req.channel.name} has no humidity control")
    try:
        bounds, delays = limit_bounds(plan.limits, battery, capacity)
    except ValueError as err:
        raise RunError(f"{where}: {err} (channel {req.channel.name})") from None
    scope = Scope(variables or {}, capacity, battery)
    steps = resolve_steps(req, program, range(len(program.instructions)), scope,
                                  bounds)
    for ins in program.instructions:
        if isinstance(ins, LoopEnd):
            try:
                for group in ins.until:
                    for c in group:
                        resolve(c.value, scope)
            except ValueError as err:
                raise RunError(f"{where}:{group[0].line}: {err} (channel "
                               f"{req.channel.name}; give a battery or the plan's capacity)"
                               ) from None
    return steps, bounds, delays


def resolve_steps(req: TestRequest, program: Program, pcs: Iterable[int], scope: Scope,
                  bounds: list[float]) -> dict[int, Resolved]:
    """The steps at ``pcs`` whose variables ``scope`` has, resolved and checked against
    the channel's ranges and the limit ``bounds``; RunError if one does not fit."""
    where, battery, info = req.plan.source, req.battery, req.channel.info
    units = _signal_units(req)
    # The limits ride on every step, for drivers that program them into the instrument's own
    # protection (LIMITS columns: v, -v, charge i, discharge i).
    limits = StepLimits(voltage_max_v=bounds[0], voltage_min_v=-bounds[1],
                        charge_current_max_a=bounds[2], discharge_current_max_a=bounds[3])
    steps: dict[int, Resolved] = {}
    for pc in pcs:
        ins = program.instructions[pc]
        if not isinstance(ins, StepSpec) or not step_variables(ins) <= scope.variables.keys():
            continue
        try:
            groups = [[(c, _threshold(c, scope, units, req.channel.name))
                       for c in group] for group in ins.until]
            if ins.profile is not None:  # the step ends with its profile
                end = ins.profile.time_s[-1]
                groups.append([(Condition(Quantity.STEP_TIME, Op.GE, Value(end)), end)])
            steps[pc] = (hal_step(ins, scope, limits), groups)
        except ValueError as err:
            hint = "" if "signal" in str(err) or isinstance(err, ExprError) else (
                f" (channel {req.channel.name}; give a battery or the plan's capacity)")
            raise RunError(f"{where}:{ins.line}: {err}{hint}") from None
        voltages, currents = extremes(steps[pc][0])
        for volts in voltages:
            if not info.voltage_min_v <= volts <= info.voltage_max_v:
                raise RunError(f"{where}:{ins.line}: {volts:g} V is outside channel "
                               f"{req.channel.name}'s range {info.voltage_min_v:g}.."
                               f"{info.voltage_max_v:g} V")
        for amps in currents:
            if abs(amps) > info.current_max_a:
                raise RunError(f"{where}:{ins.line}: {amps:g} A is beyond channel "
                               f"{req.channel.name}'s range of {info.current_max_a:g} A")
        problem = beyond_limits(steps[pc][0], bounds)
        if problem:
            raise RunError(f"{where}:{ins.line}: {problem} (channel {req.channel.name}"
                           f"{f', battery {battery.name}' if battery else ''})")
    return steps


def hal_step(spec: StepSpec, scope: Scope, limits: StepLimits | None = None) -> Step:
    """The channel setpoint of ``spec`` with ``scope``'s values (a profile scaled to C), under
    the test's safety ``limits``."""
    profile = None
    if spec.profile is not None:
        p = spec.profile
        scale = Value(1.0, p.per_capacity).resolve(scope.capacity_ah)
        profile = Profile(p.quantity, p.time_s, tuple(v * scale for v in p.values), p.hold)
    return Step(spec.mode, current_a=_resolve(spec.current, scope),
                voltage_v=_resolve(spec.voltage, scope),
                power_w=_resolve(spec.power, scope),
                resistance_ohm=_resolve(spec.resistance, scope), profile=profile,
                limits=limits)


def plan_signals(program: Program) -> list[str]:
    """The signals the steps of ``program`` end on, in a fixed order."""
    return sorted({c.quantity.name for ins in program.instructions if isinstance(ins, StepSpec)
                   for group in ins.until for c in group if isinstance(c.quantity, Signal)})


def _signal_units(req: TestRequest) -> dict[str, str]:
    """Every signal the test's channel records, with its unit."""
    units = {f"{name}.{s.name}": s.unit for name, device in req.devices for s in device.signals}
    if req.chamber is not None and req.chamber_name is not None:
        units[f"{req.chamber_name}.temperature"] = "°C"
        if req.chamber.has_humidity:
            units[f"{req.chamber_name}.humidity"] = "%"
    return units


def _threshold(condition: Condition, scope: Scope, units: dict[str, str],
               channel: str) -> float:
    """A condition's threshold: SI for a quantity, the signal's own unit for a signal; a
    ValueError says why it cannot be computed, or the signal compared on this channel."""
    quantity = condition.quantity
    if not isinstance(quantity, Signal):
        return resolve(condition.value, scope)
    assert isinstance(condition.value, Value)  # the parser takes no expressions for signals
    if quantity.name not in units:
        known = ", ".join(sorted(units)) or "none"
        raise ValueError(f"signal {quantity.name!r} is not recorded on channel {channel} "
                         f"(its signals: {known}; see [[devices]] and [[chambers]])")
    unit = units[quantity.name]
    if quantity.dimension is Dimension.COUNT:
        return condition.value.si  # a bare number, in the signal's own unit
    try:
        dimension, per_unit = parse_quantity(f"1 {unit}")
    except UnitError:
        dimension = None
    if dimension is not quantity.dimension:
        raise ValueError(f"signal {quantity.name!r} is in {unit!r}; compare it with a bare "
                         f"number in {unit!r} or a value of its kind, not {quantity.dimension}")
    return condition.value.si / per_unit.si


def _resolve(value: Amount | None, scope: Scope) -> float | None:
    return None if value is None else resolve(value, scope)


def step_variables(step: StepSpec) -> frozenset[str]:
    """The variables ``step``'s setpoints and thresholds read."""
    amounts = [step.current, step.voltage, step.power, step.resistance,
               *(c.value for group in step.until for c in group)]
    return frozenset().union(*(a.expr.variables for a in amounts if isinstance(a, Computed)))

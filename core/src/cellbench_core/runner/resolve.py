"""A plan resolved for one test: every step's setpoint and end thresholds for the battery and
channel, checked against the channel's ranges and the safety limits before anything runs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from cellbench_core.plan.expr import Computed, ExprError, Scope, resolve
from cellbench_core.plan.model import (
    Amount,
    Condition,
    Op,
    Plan,
    Quantity,
    SetStep,
    Signal,
    StepSpec,
    Value,
)
from cellbench_core.plan.program import LoopEnd, Program
from cellbench_core.runner.conditions import QUANTITY_COLUMN, SIGNAL_SLOTS
from cellbench_core.runner.limits import beyond_limits, extremes, limit_bounds
from cellbench_core.runner.records import (
    DeviceWrite,
    Resolved,
    RunError,
    SignalPlan,
    TestRequest,
)
from cellbench_core.units import Dimension, UnitError, parse_quantity
from cellbench_hal import (
    DeviceError,
    EndCondition,
    EndQuantity,
    OsiDevice,
    Profile,
    SignalInfo,
    Step,
    StepLimits,
)


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
    if len(plan_signals(plan, program)) > SIGNAL_SLOTS:
        raise RunError(f"{where}: the plan ends steps on and limits more than {SIGNAL_SLOTS} "
                       "different signals")
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
    catalogue = SignalCatalogue.of(req)
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
            groups = [[(c, _threshold(c, scope, catalogue)) for c in group]
                      for group in ins.until]
            if ins.profile is not None:  # the step ends with its profile
                end = ins.profile.time_s[-1]
                groups.append([(Condition(Quantity.STEP_TIME, Op.GE, Value(end)), end)])
            step = hal_step(ins, scope, limits)
            if ins.chamber is None and ins.external is None:  # those end by the core's hand
                step = replace(step, ends=channel_ends(groups))
            steps[pc] = (step, groups)
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


def channel_ends(groups: list[list[tuple[Condition, float]]]
                 ) -> tuple[tuple[EndCondition, ...], ...] | None:
    """A step's resolved end condition ``groups`` as the channel may follow them (see
    :attr:`cellbench_hal.Step.ends`); None when one watches what only the core counts (a
    cycle's or the test's totals, a device's signal)."""
    quantities = {q.value for q in EndQuantity}
    if any(c.quantity.value not in quantities for group in groups for c, _ in group):
        return None
    return tuple(tuple(EndCondition(EndQuantity(c.quantity.value), c.op is Op.GE, threshold)
                       for c, threshold in group) for group in groups)


def plan_signals(plan: Plan, program: Program) -> list[str]:
    """The signals the steps of ``program`` end on and ``plan``'s limits watch, in a fixed
    order: each has a column of the per-sample quantities."""
    ends = {c.quantity.name for ins in program.instructions if isinstance(ins, StepSpec)
            for group in ins.until for c in group if isinstance(c.quantity, Signal)}
    return sorted(ends | {limit.signal.name for limit in plan.limits.signals})


@dataclass(frozen=True)
class SignalCatalogue:
    """Every signal a test's channel records, by the name plans give it (``bms.cell_max_v``),
    with the device that offers it (None: a chamber's); ``unknown`` names the devices that
    learn their signals only when opened (``cellbench plan check --station`` cannot check
    theirs; a test start always can)."""

    channel: str
    infos: dict[str, tuple[SignalInfo, OsiDevice | None]]
    unknown: frozenset[str]

    @classmethod
    def of(cls, req: TestRequest) -> SignalCatalogue:
        """The signals of ``req``'s devices and chamber."""
        infos: dict[str, tuple[SignalInfo, OsiDevice | None]] = {}
        unknown = set()
        for name, device in req.devices:
            try:
                offered = list(device.signals)
            except DeviceError:
                offered = []
            if not offered:
                unknown.add(name)
            infos.update({f"{name}.{s.name}": (s, device) for s in offered})
        if req.chamber is not None and req.chamber_name is not None:
            infos[f"{req.chamber_name}.temperature"] = (SignalInfo("temperature", "°C"), None)
            if req.chamber.has_humidity:
                infos[f"{req.chamber_name}.humidity"] = (SignalInfo("humidity", "%"), None)
        return cls(req.channel.name, infos, frozenset(unknown))

    def info(self, name: str) -> SignalInfo | None:
        """Signal ``name``'s description; None if its device is one of :attr:`unknown`; a
        ValueError if the channel does not record it."""
        if name in self.infos:
            return self.infos[name][0]
        if name.split(".", 1)[0] in self.unknown:
            return None
        known = ", ".join(sorted(self.infos)) or "none"
        raise ValueError(f"signal {name!r} is not recorded on channel {self.channel} "
                         f"(its signals: {known}; see [[devices]] and [[chambers]])")

    def in_own_unit(self, signal: Signal, value: Value) -> float:
        """``value`` (written for ``signal``) in the signal's own unit: a bare number is in it
        already, a value with a unit must be of the signal's kind (ValueError otherwise). NaN
        when the signal's device is one of :attr:`unknown`."""
        info = self.info(signal.name)
        if info is None:
            return math.nan
        if signal.dimension is Dimension.COUNT:
            return value.si  # a bare number, in the signal's own unit
        try:
            dimension, per_unit = parse_quantity(f"1 {info.unit}")
        except UnitError:
            dimension = None
        if dimension is not signal.dimension:
            raise ValueError(f"signal {signal.name!r} is in {info.unit!r}; give it a bare "
                             f"number in {info.unit!r} or a value of its kind, not "
                             f"{signal.dimension}")
        return value.si / per_unit.si


def resolve_signals(req: TestRequest, program: Program) -> SignalPlan:
    """What the test does with device and chamber signals, checked against the channel's
    signals: the column of each signal it ends steps on or limits, the bounds of its signal
    limits (in each signal's own unit), and the writes of its set steps and of the station's
    ``on_start`` and ``on_stop``; a RunError names the plan line (or the station's device) of
    what does not fit."""
    plan, where = req.plan, req.plan.source
    catalogue = SignalCatalogue.of(req)
    names = plan_signals(plan, program)
    columns = {name: len(QUANTITY_COLUMN) + k for k, name in enumerate(names)}
    bound = [math.inf] * (2 * SIGNAL_SLOTS)
    delay = [0.0] * (2 * SIGNAL_SLOTS)
    units = {}
    for limit in plan.limits.signals:
        slot = columns[limit.signal.name] - len(QUANTITY_COLUMN)
        try:
            for side, value in ((0, limit.maximum), (1, limit.minimum)):
                if value is not None:
                    own = catalogue.in_own_unit(limit.signal, value)
                    bound[2 * slot + side] = own if side == 0 else -own
                    delay[2 * slot + side] = limit.delay_s
        except ValueError as err:
            raise RunError(f"{where}:{limit.line}: limits.{limit.signal.name}: {err}") from None
        info = catalogue.info(limit.signal.name)
        units[limit.signal.name] = info.unit if info is not None else ""
    writes: dict[int, tuple[DeviceWrite, ...]] = {}
    for ins in program.instructions:
        if isinstance(ins, SetStep) and ins.writes:
            writes[id(ins)] = tuple(
                _device_write(catalogue, w.signal.name, w.signal, w.value,
                              f"{where}:{w.line}: set {w.signal.name}", f"plan line {w.line}")
                for w in ins.writes)
    return SignalPlan(columns, bound, delay, units, writes,
                      _station_writes(catalogue, "on_start", req.on_start),
                      _station_writes(catalogue, "on_stop", req.on_stop))


def _station_writes(catalogue: SignalCatalogue, which: str,
                    writes: tuple[tuple[str, str, float], ...]) -> tuple[DeviceWrite, ...]:
    """The station file's ``on_start`` or ``on_stop`` values (device, signal, value in the
    signal's own unit), checked like a plan's writes."""
    return tuple(_device_write(catalogue, f"{device}.{signal}",
                               Signal(f"{device}.{signal}", Dimension.COUNT), Value(value),
                               f"device {device!r}: {which}.{signal}", which)
                 for device, signal, value in writes)


def _device_write(catalogue: SignalCatalogue, name: str, signal: Signal, value: Value,
                  where: str, why: str) -> DeviceWrite:
    """A write of ``value`` to signal ``name`` (``where`` names it for errors), checked: the
    signal is a device's, writable, and the value within its range."""
    try:
        own = catalogue.in_own_unit(signal, value)
        info = catalogue.info(name)
        device = catalogue.infos[name][1] if name in catalogue.infos else None
        if info is not None:
            if device is None:
                raise ValueError(f"{name} is a chamber's signal; chambers are set by chamber "
                                 "steps")
            check_writable(info, own, name)
    except ValueError as err:
        raise RunError(f"{where}: {err}") from None
    return DeviceWrite(name, device, own, info.unit if info is not None else "", why)


def check_writable(info: SignalInfo, value: float, name: str) -> None:
    """A ValueError if ``value`` (in the signal's own unit) may not be written to the signal
    ``info`` describes (``name`` in messages): it is read-only, or the value is not finite or
    beyond its range."""
    if not info.writable:
        raise ValueError(f"signal {name!r} is read-only")
    low = -math.inf if info.minimum is None else info.minimum
    high = math.inf if info.maximum is None else info.maximum
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{value:g} {info.unit} is beyond the range of signal {name!r} "
                         f"({low:g}..{high:g} {info.unit})")


def _threshold(condition: Condition, scope: Scope, catalogue: SignalCatalogue) -> float:
    """A condition's threshold: SI for a quantity, the signal's own unit for a signal; a
    ValueError says why it cannot be computed, or the signal compared on this channel."""
    quantity = condition.quantity
    if not isinstance(quantity, Signal):
        return resolve(condition.value, scope)
    assert isinstance(condition.value, Value)  # the parser takes no expressions for signals
    return catalogue.in_own_unit(quantity, condition.value)


def _resolve(value: Amount | None, scope: Scope) -> float | None:
    return None if value is None else resolve(value, scope)


def step_variables(step: StepSpec) -> frozenset[str]:
    """The variables ``step``'s setpoints and thresholds read."""
    amounts = [step.current, step.voltage, step.power, step.resistance,
               *(c.value for group in step.until for c in group)]
    return frozenset().union(*(a.expr.variables for a in amounts if isinstance(a, Computed)))

"""The SCPI channel drivers: one channel per SMU, bidirectional supply, or supply + load pair.

A step is checked completely before anything is sent (its mode, its values against the
instrument's ranges and the test's safety limits, the one source range it must fit in), then
the instrument's own protection is set from the safety limits, the setpoint is configured with
the error queue read after every command, and only then does the output go on. What the
instrument cannot hold itself (constant power or resistance on a CC/CV instrument, ramps and
profiles) the driver holds by sending a new setpoint every sample period from ``measure()``.

Any failure on the way (the instrument refusing a command, a timeout, a garbled reply, a
dropped connection) switches the output off, as far as the instrument can still be reached,
and raises the SDK's typed error; ``close()`` connects once more if it must, to leave the
output off.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from cellbench_scpi.commands import Kind, SourceRange
from cellbench_scpi.link import Link
from cellbench_scpi.outputs import (
    REST_TARGET,
    BidirectionalOutput,
    Envelope,
    Instrument,
    Output,
    PairOutput,
    Ratings,
    SmuOutput,
    Target,
)
from cellbench_scpi.resources import parse_resource
from cellbench_scpi.settings import (
    BidirectionalSettings,
    ChannelSettings,
    InstrumentSettings,
    PairSettings,
    SmuSettings,
)
from cellbench_sdk import (
    ChannelDriver,
    ChannelInfo,
    Clock,
    DeviceConnectionError,
    DeviceError,
    DeviceWorker,
    NotSupported,
    OutOfRange,
    ProfileQuantity,
    SampleBatch,
    Step,
    StepLimits,
    StepMode,
    VirtualClock,
    WhileOpen,
)

T = TypeVar("T")

#: Lowest voltage (V) a constant-power current is worked out at: keeps P / V finite for a cell
#: read at (or near) 0 V.
_MIN_POWER_VOLTAGE = 0.5
#: Worker-thread calls may take this many reply timeouts (a step's configuration is a dozen
#: commands and their error queries).
_CALLS_PER_APPLY = 40
_CALLS_PER_SAMPLE = 8

#: A step held by the driver: the target for the time since the step began (s), the latest
#: voltage (V) and the time until the next sample (s).
Follow = Callable[[float, float, float], Target]


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked step: the target it starts with, how the driver follows it (None when the
    instrument holds it), and the envelope it runs in."""

    step: Step
    target: Target
    follow: Follow | None
    envelope: Envelope


#: A step's values as the errors show them.
_VALUES = (("current_a", "A"), ("voltage_v", "V"), ("power_w", "W"), ("resistance_ohm", "Ω"))


def _what(channel: int, step: Step) -> str:
    """``channel 0, cc step (1.5 A)``: the channel and the step, for errors."""
    values = ", ".join(f"{v:g} {unit}" for k, unit in _VALUES
                       if (v := getattr(step, k)) is not None)
    profile = f" of {step.profile.quantity.value}" if step.profile is not None else ""
    return f"channel {channel}, {step.mode.value}{profile} step" + (f" ({values})" if values
                                                                    else "")


class ScpiChannel(ChannelDriver):
    """One channel on SCPI instruments; what the output is comes from ``output`` (an SMU, a
    bidirectional supply, or a pair)."""

    def __init__(self, driver: str, settings: ChannelSettings, output: Output,
                 where: str) -> None:
        self.settings = settings
        self.name = f"{driver}@{where}"
        self._output = output
        self._timeout_s = max(i.link.timeout_s for i in output.instruments)
        self._worker = WhileOpen[DeviceWorker](self)
        self._clock: Clock | None = None
        self._info: tuple[ChannelInfo, ...] = ()
        self._ratings: Ratings | None = None
        self._plan: Plan | None = None
        self._step_t0 = 0.0
        self._last_t = -math.inf
        self._voltage = math.nan  # the latest reading, for targets that depend on it

    @property
    def channels(self) -> Sequence[ChannelInfo]:
        return self._info

    async def open(self, clock: Clock) -> None:
        paced = self.settings.paced_speed
        if clock.virtual and (not isinstance(clock, VirtualClock) or clock.speed != paced):
            raise DeviceConnectionError(
                self.name, "real instruments run on the real clock; only an emulator whose "
                f"cell runs paced_speed times faster may run on a virtual clock of that speed "
                f"(paced_speed {paced}, clock speed {getattr(clock, 'speed', None)})")
        worker = DeviceWorker(self.name, self._timeout_s * _CALLS_PER_APPLY)
        try:
            self._ratings = await worker.call(self._open)
        except BaseException:
            await worker.run(self._release, self._timeout_s * 4, "close")
            worker.close()
            raise
        r = self._ratings
        self._info = (ChannelInfo(f"{self.name}/0", 0.0, r.voltage_max_v, r.current_max_a,
                                  r.power_max_w),)
        self._clock, self._plan, self._last_t = clock, None, -math.inf
        self._worker.set(worker)

    async def close(self) -> None:
        worker = self._worker.clear()
        if worker is None:
            return
        try:
            await worker.run(self._shutdown, self._timeout_s * _CALLS_PER_APPLY, "close")
        except DeviceError:
            pass  # released as far as the instruments allowed; nothing more can be done
        finally:
            worker.close()

    async def apply(self, channel: int, step: Step) -> None:
        worker = self._worker.get()
        c = self._channel(channel)
        plan = self._checked(c, step)
        await worker.run(lambda: self._start(plan), self._timeout_s * _CALLS_PER_APPLY,
                         "apply")

    async def output_off(self, channel: int) -> None:
        worker = self._worker.get()
        self._channel(channel)
        await worker.run(self._off, self._timeout_s * 4, "output_off")

    async def measure(self) -> SampleBatch:
        worker = self._worker.get()
        t, v, i, celsius = await worker.run(self._sample, self._timeout_s * _CALLS_PER_SAMPLE,
                                            "measure")
        return SampleBatch(np.zeros(1, dtype=np.int64), np.array([t]), np.array([v]),
                           np.array([i]), np.array([celsius]))

    def _channel(self, channel: int) -> int:
        c = operator.index(channel)
        if c != 0:
            raise OutOfRange(self.name, f"no channel {channel} (the only channel is 0)")
        return c

    # --- checking a step (on the event loop, before anything is sent) ------------------------

    def _checked(self, c: int, step: Step) -> Plan:
        """The step as a plan, or OutOfRange/NotSupported naming the channel, the step and
        the reason; nothing has been sent yet."""
        what = _what(c, step)
        r = self._ratings
        if r is None:
            raise DeviceConnectionError(self.name, "not open")
        limits = step.limits or StepLimits()
        voltages, currents = _extremes(step)
        for volts in voltages:
            if not 0.0 <= volts <= r.voltage_max_v:
                raise OutOfRange(self.name, f"{what}: {volts:g} V is outside the instrument's "
                                            f"range 0..{r.voltage_max_v:g} V")
            if not limits.voltage_min_v <= volts <= limits.voltage_max_v:
                raise OutOfRange(self.name, f"{what}: {volts:g} V is beyond the safety limits "
                                            f"{limits.voltage_min_v:g}..{limits.voltage_max_v:g}"
                                            " V")
        for amps in currents:
            if abs(amps) > r.current_max_a:
                raise OutOfRange(self.name, f"{what}: {amps:g} A is beyond the instrument's "
                                            f"range ±{r.current_max_a:g} A")
            limit = limits.charge_current_max_a if amps > 0 else limits.discharge_current_max_a
            if abs(amps) > limit:
                raise OutOfRange(self.name, f"{what}: {amps:g} A is beyond the battery's and "
                                            f"the plan's current limit {limit:g} A")
        for watts in _powers(step):
            if abs(watts) > r.power_max_w:
                raise OutOfRange(self.name, f"{what}: {watts:g} W is beyond the instrument's "
                                            f"{r.power_max_w:g} W")
        target, follow = self._targets(what, step)
        envelope = self._envelope(what, step, limits, currents, voltages)
        return Plan(step, target, follow, envelope)

    def _targets(self, what: str, step: Step) -> tuple[Target, Follow | None]:
        """The first target of ``step`` and, for what the instrument cannot hold itself, how
        the driver follows it."""
        out = self._output
        match step.mode:
            case StepMode.REST:
                return REST_TARGET, None
            case StepMode.CC:
                return Target("current", _given(step.current_a)), None
            case StepMode.CV:
                return Target("voltage", _given(step.voltage_v), step.current_a), None
            case StepMode.CCCV:
                # Constant current until the voltage is reached is the current limit of a
                # constant voltage: the cell arrives at it from either side.
                return Target("voltage", _given(step.voltage_v), abs(_given(step.current_a))), None
            case StepMode.CP:
                watts = _given(step.power_w)
                if out.holds("power", 1 if watts > 0 else -1):
                    return Target("power", watts), None
                return self._followed(lambda t, v, dt: _power_current(watts, v))
            case StepMode.CR:
                ohms = _given(step.resistance_ohm)
                if out.holds("resistance", -1):
                    return Target("resistance", ohms), None
                return self._followed(lambda t, v, dt: Target("current", -max(v, 0.0) / ohms))
        profile = step.profile
        if profile is None:
            raise NotSupported(self.name, f"{what}: no such mode")
        match profile.quantity:
            case ProfileQuantity.CURRENT:
                return self._followed(lambda t, v, dt: Target(
                    "current", float(profile.mean(np.array([t]), np.array([t + dt]))[0])))
            case ProfileQuantity.POWER:
                return self._followed(lambda t, v, dt: _power_current(
                    float(profile.mean(np.array([t]), np.array([t + dt]))[0]), v))
        limit = step.current_a
        return self._followed(lambda t, v, dt: Target(
            "voltage", float(profile.at(np.array([t + dt]))[0]), limit))

    @staticmethod
    def _followed(follow: Follow) -> tuple[Target, Follow]:
        return REST_TARGET, follow

    def _envelope(self, what: str, step: Step, limits: StepLimits, currents: list[float],
                  voltages: list[float]) -> Envelope:
        """Regulation voltages, current caps and protection levels for ``step``; for SMUs the
        one source range it runs in (OutOfRange when it would need a range change)."""
        s, r = self.settings, self._ratings
        assert r is not None  # checked by the caller
        high = min(r.voltage_max_v, limits.voltage_max_v + s.protection_margin_v)
        low = max(0.0, limits.voltage_min_v - s.protection_margin_v)
        charge = min(r.current_max_a, limits.charge_current_max_a + s.protection_margin_a)
        discharge = min(r.current_max_a, limits.discharge_current_max_a + s.protection_margin_a)
        over_voltage = min(r.voltage_max_v, limits.voltage_max_v + 2 * s.protection_margin_v)
        source_range = None
        if r.ranges:
            needed_v = max([*voltages, high if math.isfinite(limits.voltage_max_v) else 0.0])
            # A followed step's current is not known in advance: it gets the largest range.
            unknown = step.mode in (StepMode.CP, StepMode.CR) or (
                step.profile is not None and step.profile.quantity is ProfileQuantity.POWER)
            needed_a = math.inf if unknown else max((abs(a) for a in currents), default=0.0)
            source_range = self._source_range(what, r.ranges, needed_a, needed_v)
            high = min(high, source_range.voltage_v)
            over_voltage = min(over_voltage, source_range.voltage_v)
        return Envelope(high, low, charge, discharge, over_voltage, source_range)

    def _source_range(self, what: str, ranges: tuple[SourceRange, ...], amps: float,
                      volts: float) -> SourceRange:
        def fits(top: float, value: float) -> bool:  # 1.05 / 10 is a little over 0.105
            return value <= top * (1 + 1e-9)

        fitting = [r for r in ranges if fits(r.voltage_v, volts)
                   and (fits(r.current_a, amps) or math.isinf(amps))]
        if not fitting:
            need_a = next((r for r in ranges if fits(r.current_a, amps)), None)
            need_v = next((r for r in ranges if fits(r.voltage_v, volts)), None)
            raise OutOfRange(self.name, f"{what}: {amps:g} A needs the ±{_show(need_a)} range "
                                        f"and {volts:g} V the ±{_show(need_v)} range: the "
                                        "step would need a range change")
        if math.isinf(amps):
            return max(fitting, key=lambda r: r.current_a)
        return min(fitting, key=lambda r: r.current_a)  # the finest that fits

    # --- on the worker thread ---------------------------------------------------------------

    def _open(self) -> Ratings:
        self._output.open(self.settings.watchdog_s)
        return self._output.ratings()

    def _guarded(self, body: Callable[[], T]) -> T:
        """Run ``body``; on a device error, switch the output off (reconnecting once if the
        connection is gone) and raise it."""
        try:
            return body()
        except DeviceError:
            self._plan = None
            self._safe_state()
            raise

    def _safe_state(self) -> None:
        """Output off on every instrument that can still be reached, each confirmed by a
        reply to the error query; never raises."""
        for instrument in self._output.instruments:
            with contextlib.suppress(DeviceError):
                if not instrument.link.is_open:
                    instrument.link.reopen()
                    instrument.forget()
                instrument.off()
                # The reply says the instrument has read the command (what it says about
                # earlier errors does not matter any more).
                instrument.link.query(instrument.cs.command("error"))

    def _start(self, plan: Plan) -> None:
        def start() -> None:
            if not math.isfinite(self._voltage):  # followed and CV steps start from it
                self._voltage = self._output.measure()[0]
            target = plan.target
            if plan.follow is not None:
                target = plan.follow(0.0, self._voltage, 0.0)
            self._output.hold(_capped(target, plan.envelope), plan.envelope, self._voltage,
                              check=True)
            self._plan = plan
            assert self._clock is not None
            self._step_t0 = self._clock.now()
        self._guarded(start)

    def _sample(self) -> tuple[float, float, float, float]:
        def sample() -> tuple[float, float, float, float]:
            v, i = self._output.measure()
            query = self.settings.temperature_query
            celsius = math.nan if query is None else self._output.instruments[0].reading(query)
            assert self._clock is not None
            now = self._clock.now()
            self._voltage = v
            plan = self._plan
            if plan is not None and plan.follow is not None:
                dt = now - self._last_t if math.isfinite(self._last_t) else 0.0
                target = plan.follow(now - self._step_t0, v, dt)
                self._output.hold(_capped(target, plan.envelope), plan.envelope, v, check=False)
            self._last_t = now
            return now, v, i, celsius
        return self._guarded(sample)

    def _off(self) -> None:
        self._plan = None
        self._guarded(self._output.off)

    def _shutdown(self) -> None:
        self._plan = None
        self._safe_state()
        for instrument in self._output.instruments:
            cs = instrument.commands
            if cs is not None and cs.can("watchdog_off") and instrument.link.is_open:
                with contextlib.suppress(DeviceError):
                    instrument.configure("watchdog_off", check=False)
        self._release()

    def _release(self) -> None:
        for instrument in self._output.instruments:
            instrument.link.close()


class PacedScpiChannel(ScpiChannel):
    """A channel on an emulated instrument whose cell runs ``paced_speed`` times faster than
    the wall: it may run on a virtual clock of that speed (emulators only)."""

    virtual_time_ok = True


def _given(value: float | None) -> float:
    if value is None:  # Step itself refuses a mode without its value
        raise ValueError("a step is missing its value")
    return value


def _capped(target: Target, envelope: Envelope) -> Target:
    """A followed current held inside the step's current caps and source range."""
    if target.kind != "current":
        return target
    top = envelope.source_range.current_a if envelope.source_range else math.inf
    amps = min(max(target.value, -min(envelope.discharge_a, top)), min(envelope.charge_a, top))
    return Target("current", amps)


def _power_current(watts: float, volts: float) -> Target:
    return Target("current", watts / max(volts, _MIN_POWER_VOLTAGE))


def _extremes(step: Step) -> tuple[list[float], list[float]]:
    """The voltages and currents ``step`` sets (a CV's current limit counted both ways)."""
    voltages = [] if step.voltage_v is None or step.mode is StepMode.REST else [step.voltage_v]
    currents: list[float] = []
    if step.current_a is not None and step.mode in (StepMode.CC, StepMode.CCCV):
        currents.append(step.current_a)
    if step.current_a is not None and (step.mode is StepMode.CV or step.profile is not None):
        currents.append(abs(step.current_a))
    if step.profile is not None:
        values = step.profile.value
        if step.profile.quantity is ProfileQuantity.VOLTAGE:
            voltages += [min(values), max(values)]
        elif step.profile.quantity is ProfileQuantity.CURRENT:
            currents += [min(values), max(values)]
    return voltages, currents


def _powers(step: Step) -> list[float]:
    if step.mode is StepMode.CP and step.power_w is not None:
        return [step.power_w]
    if step.profile is not None and step.profile.quantity is ProfileQuantity.POWER:
        return [min(step.profile.value), max(step.profile.value)]
    return []


def _show(r: SourceRange | None) -> str:
    return "(none)" if r is None else f"{r.current_a:g} A / {r.voltage_v:g} V"


def _link(role: str, s: InstrumentSettings) -> Link:
    return Link(f"{role}@{s.resource}", parse_resource(s.resource), s.timeout_s, s.baud_rate)


def _channel(driver: str, settings: ChannelSettings, output: Output, where: str
             ) -> ScpiChannel:
    cls = PacedScpiChannel if settings.paced_speed is not None else ScpiChannel
    return cls(driver, settings, output, where)


def smu_channel(settings: SmuSettings) -> ScpiChannel:
    """The ``scpi-smu`` channel: a source-measure unit."""
    smu = Instrument(_link("scpi-smu", settings), Kind.SMU, "smu", settings.command_set)
    return _channel("scpi-smu", settings, SmuOutput(smu), settings.resource)


def bidirectional_channel(settings: BidirectionalSettings) -> ScpiChannel:
    """The ``scpi-bidirectional`` channel: a regenerative supply that sources and sinks."""
    unit = Instrument(_link("scpi-bidirectional", settings), Kind.BIDIRECTIONAL,
                      "bidirectional supply", settings.command_set)
    return _channel("scpi-bidirectional", settings, BidirectionalOutput(unit),
                    settings.resource)


def pair_channel(settings: PairSettings) -> ScpiChannel:
    """The ``scpi-pair`` channel: a supply to charge and a load to discharge, never both on."""
    supply = load = None
    if settings.supply is not None:
        supply = Instrument(_link("supply", settings.supply), Kind.SUPPLY, "supply",
                            settings.supply.command_set)
    if settings.load is not None:
        load = Instrument(_link("load", settings.load), Kind.LOAD, "load",
                          settings.load.command_set)
    where = "+".join(s.resource for s in (settings.supply, settings.load) if s is not None)
    return _channel("scpi-pair", settings, PairOutput(supply, load), where)

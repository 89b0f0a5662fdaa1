"""What the output of each kind of channel does for a setpoint: the commands of an SMU, a
bidirectional supply, or a supply and a load taking turns.

A channel's step becomes a :class:`Target` (rest, a current, a voltage with a current limit, a
power or a resistance) that an output holds natively, or a function the driver evaluates every
sample period to give the next target (``driver.py``). An :class:`Output` turns a target into
commands from its instruments' command sets, within the :class:`Envelope` of the step: the
regulation voltages, current caps and protection levels worked out from the test's safety
limits before the step starts. Everything here blocks and runs on the channel's worker thread.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from cellbench_scpi.commands import COMMAND_SETS, CommandSet, Kind, SourceRange, identify
from cellbench_scpi.commands import parse_numbers as numbers
from cellbench_scpi.link import Link
from cellbench_sdk import BadReply, DeviceError, NotSupported

TargetKind = Literal["rest", "current", "voltage", "power", "resistance"]


@dataclass(frozen=True, slots=True)
class Target:
    """What the output holds now: ``value`` in A, V, W or Ω; ``limit`` the current limit
    (magnitude, A) of a voltage target, None for the whole range."""

    kind: TargetKind
    value: float = 0.0
    limit: float | None = None


REST_TARGET = Target("rest")

#: Actions that replace one another in the instrument: sent settings are remembered by these.
_SETTING = {"source_current": "function", "source_voltage": "function",
            "function_current": "function", "function_voltage": "function",
            "function_power": "function", "function_resistance": "function"}


@dataclass(frozen=True, slots=True)
class Envelope:
    """Where a step's output must stay, from the test's limits (plus the margins) and the
    instrument's ranges: charging regulates at most to ``voltage_high``, discharging at least
    to ``voltage_low``; currents are capped; ``over_voltage`` is the protection level."""

    voltage_high: float
    voltage_low: float
    charge_a: float
    discharge_a: float
    over_voltage: float
    source_range: SourceRange | None = None  # SMUs: the one range the whole step runs in


class Instrument:
    """One instrument behind a link: its command set, the settings it was last sent (a
    setting is only sent again when it changes) and its output state."""

    def __init__(self, link: Link, kind: Kind, role: str, command_set: str | None) -> None:
        self.link = link
        self.kind = kind
        self.role = role
        self.wanted = command_set
        self.commands: CommandSet | None = None
        self.idn = ""
        self.on = False
        self._sent: dict[str, str] = {}

    @property
    def cs(self) -> CommandSet:
        """The command set, once identified."""
        if self.commands is None:
            raise DeviceError(self.link.name, f"{self.role} not identified")
        return self.commands

    def open(self, watchdog_s: float) -> None:
        """Connect, check ``*IDN?``, reset, set up, arm the watchdog, output off."""
        self.link.open()
        self.idn = self.link.query("*IDN?")
        self.commands = self._identify(self.idn)
        for line in (*self.commands.reset, *self.commands.setup):
            self.link.write(line)
            self.check_errors(line)
        self._sent.clear()
        self.off()
        if watchdog_s > 0 and self.commands.watchdog:
            self.configure("watchdog_time", watchdog_s)
            self.configure("watchdog_on")

    def _identify(self, idn: str) -> CommandSet:
        if self.wanted is not None:
            chosen = COMMAND_SETS[self.wanted]
            if chosen.idn != "." and not chosen.matches(idn):
                raise DeviceError(self.link.name, f"*IDN? answered {idn!r}, which is not a "
                                                  f"{chosen.description} (command_set "
                                                  f"{self.wanted!r})")
            return chosen
        found = identify(idn, self.kind)
        if found is None:
            raise DeviceError(self.link.name, f"*IDN? answered {idn!r}, which is no "
                                              f"{self.kind.value} this driver knows; set "
                                              "command_set if it speaks one of "
                                              + ", ".join(c for c, s in COMMAND_SETS.items()
                                                          if s.kind is self.kind))
        return found

    def configure(self, action: str, value: float | None = None, *, check: bool = True) -> None:
        """Send ``action`` unless the instrument already has it; with ``check``, read the error
        queue after it and raise a DeviceError naming the command and the instrument's
        message."""
        line = self.cs.command(action, value)
        if self.has(action, value):
            return
        setting = _SETTING.get(action, action)
        self._sent.pop(setting, None)  # unknown until it is confirmed
        self.link.write(line)
        if check:
            self.check_errors(line)
        self._sent[setting] = line

    def has(self, action: str, value: float | None = None) -> bool:
        """True when the instrument was last sent ``action`` (with ``value``)."""
        return self._sent.get(_SETTING.get(action, action)) == self.cs.command(action, value)

    def check_errors(self, after: str) -> None:
        """Read the error queue; a DeviceError naming ``after`` and every message queued."""
        messages = []
        for _ in range(16):  # a queue that never empties is a fault in its own right
            reply = self.link.query(self.cs.command("error"))
            code = reply.split(",", 1)[0].strip()
            try:
                fine = int(float(code)) == int(self.cs.no_error)
            except ValueError:
                raise BadReply(self.link.name, f"{self.cs.commands['error']!r} answered "
                                               f"{reply!r}") from None
            if fine:
                break
            messages.append(reply)
        if messages:
            raise DeviceError(self.link.name, f"{after!r} refused: {'; '.join(messages)}")

    def output(self, on: bool, *, check: bool = True) -> None:
        """Switch the output on or off."""
        line = self.cs.command("output_on" if on else "output_off")
        self.link.write(line)
        if check:
            self.check_errors(line)
        self.on = on

    def off(self) -> None:
        """Output off without asking for errors (the safe state must not wait on them)."""
        self.output(False, check=False)

    def measure(self) -> tuple[float, float]:
        """Volts and amps (cellbench's sign) from the measure query."""
        cs = self.cs
        reply = self.link.query(cs.commands["measure"])
        try:
            values = numbers(reply)
            v, i = values[cs.measure_fields[0]], values[cs.measure_fields[1]]
        except (ValueError, IndexError):
            raise BadReply(self.link.name, f"{cs.commands['measure']!r} answered {reply!r}, "
                                           "not volts and amps") from None
        if not (math.isfinite(v) and math.isfinite(i)):
            raise BadReply(self.link.name, f"{cs.commands['measure']!r} answered {reply!r}")
        return v, cs.current_sign * i

    def reading(self, query: str) -> float:
        """A number the instrument answers to ``query`` (not a number if the reply holds none)."""
        reply = self.link.query(query)
        try:
            return numbers(reply)[0]
        except (ValueError, IndexError):
            raise BadReply(self.link.name, f"{query!r} answered {reply!r}, not a number") from None

    def nominal(self, action: str) -> float:
        """A rating the instrument reports (``nominal_voltage`` ...)."""
        line = self.cs.command(action)
        reply = self.link.query(line)
        try:
            value = numbers(reply)[0]
        except (ValueError, IndexError):
            raise BadReply(self.link.name, f"{line!r} answered {reply!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise BadReply(self.link.name, f"{line!r} answered {reply!r}")
        return value

    def forget(self) -> None:
        """Forget what was sent (after a reconnection the instrument may hold anything)."""
        self._sent.clear()


@dataclass(frozen=True, slots=True)
class Ratings:
    """The channel's ranges: highest voltage, largest current each way, largest power."""

    voltage_max_v: float
    current_max_a: float
    power_max_w: float
    ranges: tuple[SourceRange, ...] = ()


class Output(ABC):
    """A channel's output: one or two instruments and how they hold a target."""

    #: The target kinds it holds without the driver's help, by the sign they need (+1 charge,
    #: -1 discharge, 0 either).
    native: frozenset[tuple[TargetKind, int]]

    def __init__(self, instruments: list[Instrument]) -> None:
        self.instruments = instruments

    @abstractmethod
    def ratings(self) -> Ratings:
        """The ranges, once open."""

    @abstractmethod
    def hold(self, target: Target, envelope: Envelope, voltage_v: float, *,
             check: bool) -> None:
        """Make the output hold ``target`` within ``envelope`` (``voltage_v``: the latest
        reading); with ``check``, every setting is confirmed by the error queue."""

    @abstractmethod
    def measure(self) -> tuple[float, float]:
        """Volts and amps at the cell now."""

    def holds(self, kind: TargetKind, sign: int) -> bool:
        """True when the output holds a target of ``kind`` (whose value has ``sign``)."""
        return (kind, sign) in self.native or (kind, 0) in self.native

    def open(self, watchdog_s: float) -> None:
        """Open every instrument."""
        for instrument in self.instruments:
            instrument.open(watchdog_s)

    def off(self) -> None:
        """Every output off, without asking for errors."""
        for instrument in self.instruments:
            instrument.off()


class SmuOutput(Output):
    """A four-quadrant SMU: a current source with a voltage compliance, or a voltage source
    with a current compliance, in one fixed source range for the whole step."""

    native = frozenset({("rest", 0), ("current", 0), ("voltage", 0)})

    def __init__(self, smu: Instrument) -> None:
        super().__init__([smu])
        self.smu = smu

    def ratings(self) -> Ratings:
        ranges = self.smu.cs.ranges
        return Ratings(max(r.voltage_v for r in ranges), max(r.current_a for r in ranges),
                       max(r.voltage_v * r.current_a for r in ranges), ranges)

    def hold(self, target: Target, envelope: Envelope, voltage_v: float, *,
             check: bool) -> None:
        smu, rng = self.smu, envelope.source_range
        if rng is None:
            raise DeviceError(smu.link.name, "an SMU step needs a source range")
        function = "source_voltage" if target.kind == "voltage" else "source_current"
        if not smu.has(function):
            if smu.on:  # the source function changes with the output off
                smu.output(False, check=check)
            smu.configure(function, check=check)
        if smu.cs.can("over_voltage"):
            smu.configure("over_voltage", envelope.over_voltage, check=check)
        if target.kind == "voltage":
            cap = max(envelope.charge_a, envelope.discharge_a)
            limit = min(rng.current_a, cap, target.limit if target.limit is not None
                        else math.inf)
            smu.configure("voltage_range", rng.voltage_v, check=check)
            smu.configure("current_compliance", limit, check=check)
            smu.configure("voltage", target.value, check=check)
        else:
            amps = target.value if target.kind == "current" else 0.0
            smu.configure("current_range", rng.current_a, check=check)
            smu.configure("voltage_compliance", min(rng.voltage_v, envelope.voltage_high),
                          check=check)
            smu.configure("current", amps, check=check)
        if not smu.on:
            smu.output(True, check=check)

    def measure(self) -> tuple[float, float]:
        return self.smu.measure()


class BidirectionalOutput(Output):
    """A bidirectional supply: a voltage setpoint with a source current (charging) and a sink
    current (discharging) limit, and power limits on both sides; a constant current is a
    current limit with the voltage set beyond where the cell may go."""

    native = frozenset({("rest", 0), ("current", 0), ("voltage", 0), ("power", 0)})

    def __init__(self, unit: Instrument) -> None:
        super().__init__([unit])
        self.unit = unit
        self._ratings: Ratings | None = None

    def open(self, watchdog_s: float) -> None:
        super().open(watchdog_s)
        u = self.unit
        self._ratings = Ratings(u.nominal("nominal_voltage"), u.nominal("nominal_current"),
                                u.nominal("nominal_power"))

    def ratings(self) -> Ratings:
        if self._ratings is None:
            raise DeviceError(self.unit.link.name, "not open")
        return self._ratings

    def hold(self, target: Target, envelope: Envelope, voltage_v: float, *,
             check: bool) -> None:
        u, r = self.unit, self.ratings()
        volts, source, sink = envelope.voltage_high, 0.0, 0.0
        power, sink_power = r.power_max_w, r.power_max_w
        if target.kind == "current" and target.value > 0:
            source = target.value
        elif target.kind == "current" and target.value < 0:
            volts, sink = envelope.voltage_low, -target.value
        elif target.kind == "voltage":
            limit = math.inf if target.limit is None else target.limit
            volts = target.value
            source, sink = min(limit, envelope.charge_a), min(limit, envelope.discharge_a)
        elif target.kind == "power" and target.value > 0:
            source, power = envelope.charge_a, target.value
        elif target.kind == "power" and target.value < 0:
            volts, sink, sink_power = envelope.voltage_low, envelope.discharge_a, -target.value
        u.configure("over_voltage", envelope.over_voltage, check=check)
        if u.cs.can("over_current"):
            u.configure("over_current", min(r.current_max_a, envelope.charge_a), check=check)
        if u.cs.can("sink_over_current"):
            u.configure("sink_over_current", min(r.current_max_a, envelope.discharge_a),
                        check=check)
        u.configure("voltage", volts, check=check)
        u.configure("current", source, check=check)
        u.configure("sink_current", sink, check=check)
        u.configure("power", power, check=check)
        u.configure("sink_power", sink_power, check=check)
        if not u.on:
            u.output(True, check=check)

    def measure(self) -> tuple[float, float]:
        return self.unit.measure()


class PairOutput(Output):
    """A supply that charges and an electronic load that discharges, one of them on at a time:
    the one that is on is switched off (and confirmed) before the other goes on."""

    native = frozenset({("rest", 0), ("current", 0), ("voltage", 0), ("power", -1),
                        ("resistance", -1)})

    def __init__(self, supply: Instrument | None, load: Instrument | None) -> None:
        super().__init__([i for i in (supply, load) if i is not None])
        self.supply, self.load = supply, load
        self._ratings: Ratings | None = None

    def open(self, watchdog_s: float) -> None:
        super().open(watchdog_s)
        voltages, currents, powers = [], [], []
        for unit in self.instruments:
            voltages.append(unit.nominal("nominal_voltage"))
            currents.append(unit.nominal("nominal_current"))
            powers.append(unit.nominal("nominal_power") if unit.cs.can("nominal_power")
                          else voltages[-1] * currents[-1])
        self._ratings = Ratings(min(voltages), min(currents), min(powers))

    def ratings(self) -> Ratings:
        if self._ratings is None:
            raise DeviceError(self.instruments[0].link.name, "not open")
        return self._ratings

    def unit_for(self, target: Target, voltage_v: float) -> Instrument | None:
        """The instrument that holds ``target`` with the cell at ``voltage_v``; None to rest.
        NotSupported when that instrument is missing."""
        if target.kind == "rest" or (target.kind == "current" and target.value == 0):
            return None
        charging = target.value > 0 if target.kind != "voltage" else target.value > voltage_v
        if target.kind == "resistance":
            charging = False
        unit = self.supply if charging else self.load
        if unit is None:
            missing = "supply: it cannot charge" if charging else "load: it cannot discharge"
            raise NotSupported(self.instruments[0].link.name, f"the channel has no {missing}")
        return unit

    def hold(self, target: Target, envelope: Envelope, voltage_v: float, *,
             check: bool) -> None:
        unit = self.unit_for(target, voltage_v)
        for other in self.instruments:
            if other is not unit and other.on:
                # Confirmed (by the reply to the error query) even while the driver follows a
                # setpoint: the two instruments are two connections, and the other may not go
                # on before this one has read its output-off.
                other.output(False, check=True)
        if unit is None:
            return
        r = self.ratings()
        if unit is self.supply:
            volts, amps = envelope.voltage_high, target.value
            if target.kind == "voltage":
                volts = target.value
                amps = envelope.charge_a if target.limit is None else target.limit
            unit.configure("over_voltage", envelope.over_voltage, check=check)
            unit.configure("over_current", min(r.current_max_a, envelope.charge_a),
                           check=check)
            unit.configure("voltage", volts, check=check)
            unit.configure("current", min(amps, envelope.charge_a), check=check)
        else:
            unit.configure("over_current", min(r.current_max_a, envelope.discharge_a),
                           check=check)
            if unit.cs.can("under_voltage") and envelope.voltage_low > 0:
                unit.configure("under_voltage", envelope.voltage_low, check=check)
            function, action, value = {
                "current": ("function_current", "current", -target.value),
                "voltage": ("function_voltage", "voltage", target.value),
                "power": ("function_power", "power", -target.value),
                "resistance": ("function_resistance", "resistance", target.value),
            }[target.kind]
            # The level before the function: a load switched to a function first would
            # briefly hold whatever level that function had before.
            if target.kind == "voltage" and unit.cs.can("current_limit"):
                limit = envelope.discharge_a if target.limit is None else target.limit
                unit.configure("current_limit", min(limit, envelope.discharge_a), check=check)
            unit.configure(action, value, check=check)
            unit.configure(function, check=check)
        if not unit.on:
            unit.output(True, check=check)

    def measure(self) -> tuple[float, float]:
        active = [u for u in self.instruments if u.on]
        unit = active[0] if active else (self.load or self.instruments[0])
        return unit.measure()

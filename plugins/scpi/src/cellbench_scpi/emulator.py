"""Emulated SCPI instruments with a simulated cell behind their terminals.

Each :class:`EmulatedInstrument` speaks one command set, parsed with the same tables the
drivers write with (``commands.py``): its error queue, output, source levels, compliance and
protection (a trip switches the output off and queues an error), range limits (a value beyond
them is refused with ``-222``) and, where the family has one, the communication watchdog. Its
terminals hold an :class:`EmulatedCell`, the SDK's equivalent-circuit cell model, which runs
``speed`` times faster than the wall clock; a supply and a load can share one cell (a pair),
and the cell counts every moment both had their outputs on.

An instrument is the SDK's :class:`~cellbench_sdk.emulation.LineEmulator`: it serves on TCP or
a pseudo-terminal, and its ``faults`` make it answer slowly, garble, stay silent or drop the
connection; ``refuse`` makes it refuse commands. :class:`Emulator` serves the instruments of
one cell together (:meth:`Emulator.start`, :meth:`Emulator.start_pty`, :func:`serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Self

import numpy as np

from cellbench_scpi.commands import (
    COMMAND_SETS,
    EA_PSB,
    KEITHLEY_2400,
    SCPI_LOAD,
    SCPI_SUPPLY,
    CommandSet,
    Kind,
)
from cellbench_sdk.cell import CellBank, CellParameters, Mode, OutputRange, Setpoints
from cellbench_sdk.emulation import LineEmulator, ModelTime

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: How often the emulator looks at its cell without being asked (wall seconds): protection
#: trips and the watchdog act within this.
TICK_S = 0.02
#: The emulator's stand-in for a temperature sensor input: the cell's temperature (°C).
TEMPERATURE_QUERY = "MEAS:TEMP?"

#: SCPI errors the emulator queues.
UNDEFINED_HEADER = '-113,"Undefined header"'
DATA_OUT_OF_RANGE = '-222,"Data out of range"'
SETTINGS_CONFLICT = '-221,"Settings conflict"'
PROTECTION_TRIPPED = '-310,"System error; {} protection tripped, output off"'
WATCHDOG_EXPIRED = '-310,"System error; communication watchdog expired, output off"'


class EmulatedCell:
    """One cell on the terminals of one or more instruments, ``speed`` times faster than the
    wall clock. The instrument whose output is on drives it; with none on it rests."""

    def __init__(self, params: CellParameters | None = None, *, speed: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bank = CellBank(1, params or CellParameters(capacity_spread=0.0,
                                                         resistance_spread=0.0))
        self.time = ModelTime(speed, clock)
        self.instruments: list[EmulatedInstrument] = []
        #: How many times more than one output was found on.
        self.both_on = 0

    def count_overlap(self) -> None:
        """Count a moment at which more than one output is on (a pair must never)."""
        if sum(i.output_on for i in self.instruments) > 1:
            self.both_on += 1

    @property
    def rest_voltage(self) -> float:
        """The voltage behind the cell's series resistance now (V)."""
        return float(self.bank.ocv(self.bank.soc)[0] + self.bank.v_rc[0])

    @property
    def voltage_v(self) -> float:
        """Terminal voltage (V)."""
        return float(self.bank.voltage_v[0])

    @property
    def current_a(self) -> float:
        """Current into the cell (A)."""
        return float(self.bank.current_a[0])

    def advance(self) -> None:
        """Run the cell up to now under the output that is on."""
        dt = self.time.elapsed()
        for instrument in self.instruments:
            instrument.watch()
        self.count_overlap()
        on = [i for i in self.instruments if i.output_on]
        if dt <= 0:
            return
        setpoints, limits = Setpoints.rest(1), OutputRange(-1e3, 1e3, 1e3)
        if on:
            setpoints, limits = on[0].drive(self.rest_voltage)
        # Long silences are cut into pieces so that CV and compliance stay accurate.
        pieces = max(1, math.ceil(dt / 10.0))
        for _ in range(pieces):
            self.bank.advance(dt / pieces, setpoints, limits)
        for instrument in on:
            instrument.protect(self.voltage_v, self.current_a)


def _setpoints(mode: Mode, current: float = 0.0, voltage: float = 0.0, power: float = 0.0,
               resistance: float = 1.0) -> Setpoints:
    return Setpoints(np.array([mode], dtype=np.int8), np.array([current]), np.array([voltage]),
                     np.array([power]), np.array([resistance]))


class EmulatedInstrument(LineEmulator):
    """One instrument of ``command_set`` on ``cell``'s terminals.

    ``ratings`` are the highest voltage, current and power it reports (bidirectional
    supplies, supplies and loads); SMUs take their ranges from the command set.
    """

    def __init__(self, command_set: CommandSet, cell: EmulatedCell, *,
                 ratings: tuple[float, float, float] = (20.0, 10.0, 200.0),
                 idn: str | None = None) -> None:
        super().__init__()
        self.cs = command_set
        self.cell = cell
        cell.instruments.append(self)
        self.idn = idn or command_set.example_idn
        self.voltage_max, self.current_max, self.power_max = ratings
        if command_set.ranges:
            self.voltage_max = max(r.voltage_v for r in command_set.ranges)
            self.current_max = max(r.current_a for r in command_set.ranges)
            self.power_max = max(r.voltage_v * r.current_a for r in command_set.ranges)
        #: Actions refused with -221 in the error queue (on top of ``faults``).
        self.refuse: set[str] = set()
        self.errors: deque[str] = deque(maxlen=32)
        self.tripped = ""  # which protection switched the output off, until *RST
        self.watchdog_tripped = False
        self.in_compliance = False  # an SMU limited by its compliance at the last update
        self._patterns = [(re.compile(_pattern(t), re.IGNORECASE), a)
                          for a, t in sorted(command_set.commands.items(),
                                             key=lambda item: -len(item[1]))]
        self._plain = {c.upper() for c in (*command_set.reset, *command_set.setup)}
        self._last_heard = time.monotonic()
        self.reset()

    # --- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """The state after ``*RST``: output off, levels zero, protection at the maximum."""
        self.output_on = False
        self.function = "current" if self.cs.kind is Kind.SMU else {
            Kind.LOAD: "current"}.get(self.cs.kind, "voltage")
        big = self.voltage_max * 1.1
        self.values: dict[str, float] = {
            "current": 0.0, "voltage": 0.0, "sink_current": 0.0, "power": self.power_max,
            "sink_power": self.power_max, "resistance": 1e3,
            "current_range": self.current_max, "voltage_range": self.voltage_max,
            "voltage_compliance": self.voltage_max, "current_compliance": self.current_max,
            "over_voltage": big, "over_current": self.current_max * 1.1,
            "sink_over_current": self.current_max * 1.1, "under_voltage": 0.0,
            "current_limit": self.current_max,
            "watchdog_time": 0.0,
        }
        self.watchdog_on = False
        self.tripped = ""
        self.watchdog_tripped = False

    def watch(self) -> None:
        """The watchdog: output off after a silence longer than its time (wall seconds)."""
        silence = time.monotonic() - self._last_heard
        if (self.watchdog_on and self.output_on and self.values["watchdog_time"] > 0
                and silence > self.values["watchdog_time"]):
            self.output_on = False
            self.watchdog_tripped = True
            self.errors.append(WATCHDOG_EXPIRED)

    def drive(self, rest_voltage: float) -> tuple[Setpoints, OutputRange]:
        """What the output does to the cell now (output on)."""
        v = self.values
        wide = OutputRange(-self.voltage_max, self.voltage_max, self.current_max, self.power_max)
        match self.cs.kind:
            case Kind.SMU if self.function == "voltage":
                limit = min(v["current_compliance"], v["current_range"])
                self.in_compliance = False
                return (_setpoints(Mode.CV, current=limit, voltage=v["voltage"]),
                        OutputRange(-v["voltage_range"], v["voltage_range"], limit))
            case Kind.SMU:
                compliance = min(v["voltage_compliance"], v["voltage_range"])
                self.in_compliance = rest_voltage >= compliance - 1e-3
                return (_setpoints(Mode.CC, current=v["current"]),
                        OutputRange(-compliance, compliance, v["current_range"]))
            case Kind.BIDIRECTIONAL:
                if v["voltage"] >= rest_voltage:
                    return (_setpoints(Mode.CV, current=v["current"], voltage=v["voltage"]),
                            OutputRange(0.0, self.voltage_max, v["current"], v["power"]))
                return (_setpoints(Mode.CV, current=v["sink_current"], voltage=v["voltage"]),
                        OutputRange(0.0, self.voltage_max, v["sink_current"], v["sink_power"]))
            case Kind.SUPPLY:
                if v["voltage"] <= rest_voltage:  # a supply cannot sink
                    return Setpoints.rest(1), wide
                return (_setpoints(Mode.CV, current=v["current"], voltage=v["voltage"]),
                        OutputRange(0.0, self.voltage_max, v["current"]))
        # A load: it only ever takes current out of the cell.
        match self.function:
            case "voltage" if v["voltage"] >= rest_voltage:
                return Setpoints.rest(1), wide
            case "voltage":
                return (_setpoints(Mode.CV, current=v["current_limit"], voltage=v["voltage"]),
                        wide)
            case "power":
                return _setpoints(Mode.CP, power=-v["power"]), wide
            case "resistance":
                return _setpoints(Mode.CR, resistance=v["resistance"]), wide
        return _setpoints(Mode.CC, current=-v["current"]), wide

    def protect(self, volts: float, amps: float) -> None:
        """Trip the protection the cell's state is beyond: output off, an error queued."""
        v = self.values
        trip = ""
        if volts > v["over_voltage"]:
            trip = "over-voltage"
        elif amps > v["over_current"] + 1e-9 and self.cs.can("over_current"):
            trip = "over-current"
        elif -amps > v["sink_over_current"] + 1e-9 and self.cs.can("sink_over_current"):
            trip = "sink over-current"
        elif self.cs.kind is Kind.LOAD and -amps > v["over_current"] + 1e-9:
            trip = "over-current"
        elif self.cs.kind is Kind.LOAD and 0 < volts < v["under_voltage"]:
            trip = "under-voltage"
        if trip:
            self.output_on = False
            self.tripped = trip
            self.errors.append(PROTECTION_TRIPPED.format(trip))

    # --- commands ------------------------------------------------------------------------

    def respond(self, line: str) -> str | None:
        """Carry out one command line; the reply of a query, None for a command (and for a
        query it does not know, which queues -113 as an instrument would)."""
        self._last_heard = time.monotonic()
        self.cell.advance()
        reply = self._command(line.strip())
        self.cell.count_overlap()
        return reply

    def _command(self, text: str) -> str | None:
        upper = text.upper()
        if upper == "*IDN?":
            return self.idn
        if upper == TEMPERATURE_QUERY:
            return f"{float(self.cell.bank.temperature_c[0]):.3f}"
        if upper in ("*RST", "*CLS") or upper in self._plain:
            if upper == "*RST":
                self.reset()
            elif upper == "*CLS":
                self.errors.clear()
            return None
        for pattern, action in self._patterns:
            found = pattern.fullmatch(text)
            if found is not None:
                return self._action(action, found.group(1) if found.groups() else None)
        self.errors.append(UNDEFINED_HEADER)
        return None

    def _action(self, action: str, argument: str | None) -> str | None:
        if action in self.refuse:
            self.errors.append(SETTINGS_CONFLICT)
            return None
        match action:
            case "measure":
                return self._measurement()
            case "error":
                return self.errors.popleft() if self.errors else f'{self.cs.no_error},"No error"'
            case "nominal_voltage":
                return f"{self.voltage_max:.2f} V"
            case "nominal_current":
                return f"{self.current_max:.2f} A"
            case "nominal_power":
                return f"{self.power_max:.1f} W"
            case "output_on":
                if self.tripped or self.watchdog_tripped:
                    self.errors.append(SETTINGS_CONFLICT)  # a trip needs *RST first
                else:
                    self.output_on = True
            case "output_off":
                self.output_on = False
            case "watchdog_on" | "watchdog_off":
                self.watchdog_on = action == "watchdog_on"
            case "source_current" | "function_current":
                self.function = "current"
            case "source_voltage" | "function_voltage":
                self.function = "voltage"
            case "function_power":
                self.function = "power"
            case "function_resistance":
                self.function = "resistance"
            case _:
                self._set(action, argument)
        return None

    def _set(self, action: str, argument: str | None) -> None:
        value = _value(argument)
        if value is None or not self._within(action, value):
            self.errors.append(DATA_OUT_OF_RANGE)
            return
        self.values[action] = value

    def _within(self, action: str, value: float) -> bool:
        """Whether ``value`` is inside the instrument's ranges for ``action``."""
        volts = self.values["voltage_range"] if self.cs.kind is Kind.SMU else self.voltage_max
        amps = self.values["current_range"] if self.cs.kind is Kind.SMU else self.current_max
        limit = {
            "current": amps, "voltage": volts, "sink_current": self.current_max,
            "current_compliance": self.current_max, "voltage_compliance": self.voltage_max,
            "current_limit": self.current_max,
            "power": self.power_max, "sink_power": self.power_max,
            "current_range": self.current_max, "voltage_range": self.voltage_max,
        }.get(action, math.inf)
        signed = action in ("current", "voltage") and self.cs.kind is Kind.SMU
        low = -limit if signed else 0.0
        if action == "resistance":
            low = 1e-3
        return low <= value <= limit * (1 + 1e-9)  # 1.05 / 10 is a little over 0.105

    def _measurement(self) -> str:
        v, i = self.cell.voltage_v, self.cell.current_a if self.output_on else 0.0
        i = i * self.cs.current_sign
        if self.cs.kind is Kind.BIDIRECTIONAL:  # EA answers with units
            return f"{v:.4f} V, {i:.4f} A, {v * i:.3f} W"
        if ";" in self.cs.commands["measure"]:
            return f"{v:.6g};{i:.6g}"
        return f"{v:.6e},{i:.6e}"


def _pattern(template: str) -> str:
    """A regular expression matching the commands ``template`` writes."""
    return re.escape(template).replace(r"\{\}", r"(\S+)")


def _value(argument: str | None) -> float | None:
    """The number in a command's argument: ``1.5``, ``PROT20`` (20), ``NONE`` (inf)."""
    if argument is None:
        return None
    if argument.upper() in ("NONE", "INF"):
        return math.inf
    found = _NUMBER.search(argument)
    if found is None:
        return None
    value = float(found.group())
    return value if math.isfinite(value) else None


# --- serving -------------------------------------------------------------------------------


class Emulator:
    """The instruments on one cell, each served on a TCP port or a pseudo-terminal, and the
    cell's own ticking (protection trips and the watchdog act without a command).

    ``async with Emulator.create("smu") as emulator`` serves on free ports until the block
    ends. :meth:`stop` and :meth:`start` again drop and restore the connections with the
    instruments' state kept, as when a network goes away and comes back.
    """

    def __init__(self, instruments: list[EmulatedInstrument], cell: EmulatedCell) -> None:
        self.instruments = instruments
        self.cell = cell
        self.ports: list[int] = []
        self.pty_paths: list[str] = []
        self._ticker: asyncio.Task[None] | None = None

    @classmethod
    def create(cls, model: str, *, family: str | None = None, speed: float = 1.0,
               params: CellParameters | None = None,
               ratings: tuple[float, float, float] = (20.0, 10.0, 200.0),
               idn: str | None = None) -> Emulator:
        """An emulator of ``model`` (smu, bidirectional, supply, load, or pair: a supply and a
        load on one cell) speaking ``family``'s command set (the model's usual by default)."""
        cell = EmulatedCell(params, speed=speed)
        defaults = {"smu": KEITHLEY_2400, "bidirectional": EA_PSB, "supply": SCPI_SUPPLY,
                    "load": SCPI_LOAD}
        if model == "pair":
            if family is not None:
                raise ValueError("a pair is a scpi-supply and a scpi-load: --family applies "
                                 "to one instrument")
            return cls([EmulatedInstrument(SCPI_SUPPLY, cell, ratings=ratings),
                        EmulatedInstrument(SCPI_LOAD, cell, ratings=ratings)], cell)
        if model not in defaults:
            raise ValueError(f"unknown model {model!r}: smu, bidirectional, supply, load or pair")
        command_set = COMMAND_SETS[family] if family else defaults[model]
        if command_set.kind.value != model:
            raise ValueError(f"command set {command_set.name} is a {command_set.kind.value}, "
                             f"not a {model}")
        return cls([EmulatedInstrument(command_set, cell, ratings=ratings, idn=idn)], cell)

    async def start(self, host: str = "127.0.0.1", ports: list[int] | None = None) -> Self:
        """Serve every instrument on TCP (ports: the given ones, the last ones, or free)."""
        wanted = ports or self.ports or [0] * len(self.instruments)
        self.ports = [await instrument.start(host, port)
                      for instrument, port in zip(self.instruments, wanted, strict=True)]
        self._tick()
        return self

    async def start_pty(self) -> Self:
        """Serve every instrument on a pseudo-terminal (its path in :attr:`pty_paths`)."""
        self.pty_paths = [await instrument.start_pty() for instrument in self.instruments]
        self._tick()
        return self

    def _tick(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._ticking())

    async def _ticking(self) -> None:
        while True:
            self.cell.advance()
            await asyncio.sleep(TICK_S)

    async def stop(self) -> None:
        """Stop serving and drop every connection; the instruments keep their state."""
        for instrument in self.instruments:
            await instrument.stop()

    async def close(self) -> None:
        """Stop serving and stop the cell's ticking."""
        await self.stop()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def __aenter__(self) -> Self:
        if not self.ports and not self.pty_paths:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def resource(self, index: int = 0) -> str:
        """The VISA resource string of instrument ``index``."""
        if self.pty_paths:
            return f"ASRL{self.pty_paths[index]}::INSTR"
        return f"TCPIP::127.0.0.1::{self.ports[index]}::SOCKET"


async def serve(host: str, port: int, *, model: str = "smu", speed: float = 1.0) -> None:
    """Serve an emulator of ``model`` (with a 2.5 Ah NMC cell at half charge) on
    ``host``:``port`` until cancelled; a pair serves its supply there and its load on the next
    port."""
    emulator = Emulator.create(model, speed=speed)
    await emulator.start(host, [port + k for k in range(len(emulator.instruments))])
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.close()


async def serve_smu(host: str, port: int, *, speed: float = 1.0) -> None:
    """The emulator of the ``scpi-smu`` descriptor: a Keithley 2400 (see :func:`serve`)."""
    await serve(host, port, model="smu", speed=speed)


async def serve_bidirectional(host: str, port: int, *, speed: float = 1.0) -> None:
    """The emulator of the ``scpi-bidirectional`` descriptor: an EA PSB (see :func:`serve`)."""
    await serve(host, port, model="bidirectional", speed=speed)


async def serve_pair(host: str, port: int, *, speed: float = 1.0) -> None:
    """The emulator of the ``scpi-pair`` descriptor: a supply on ``port`` and a load on the
    next one, sharing a cell (see :func:`serve`)."""
    await serve(host, port, model="pair", speed=speed)

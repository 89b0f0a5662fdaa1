"""Command sets as data: one table per instrument family, with small overrides in code.

A :class:`CommandSet` says how one family of instruments does each *action* the drivers need
(switch the output on, source a current, set the compliance voltage, read volts and amps...):
a template with ``{}`` where the number goes, or nothing when the family cannot do it. The
drivers build every command from these tables and the emulator parses commands with the same
tables, so a new family is a new table (and, where its syntax is odd, an override), not a new
driver. docs/scpi.md lists the tables and how to add one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Kind(StrEnum):
    """What an instrument is, which decides the driver that runs it."""

    SMU = "smu"  # four-quadrant source-measure unit: sources and sinks
    BIDIRECTIONAL = "bidirectional"  # regenerative supply: source and sink in one unit
    SUPPLY = "supply"  # one-quadrant supply: sources only (charging)
    LOAD = "load"  # electronic load: sinks only (discharging)


@dataclass(frozen=True, slots=True)
class SourceRange:
    """One output range: the largest current and, at that current, the largest voltage."""

    current_a: float
    voltage_v: float


#: Every action a driver may use. ``setup`` and ``reset`` are lists of plain commands; the
#: queries end with ``?``; the rest take one number.
ACTIONS = (
    "output_on", "output_off",
    "source_current", "source_voltage",  # SMU source function
    "current", "voltage",  # levels: SMU source levels; supply/bidirectional/load settings
    "current_range", "voltage_range",  # SMU source ranges (autorange is off)
    "voltage_compliance", "current_compliance",  # SMU compliance
    "sink_current", "sink_power", "power",  # bidirectional sink side, and power limits
    "function_current", "function_voltage", "function_power", "function_resistance",  # loads
    "resistance", "current_limit",  # loads (current_limit: of their constant voltage)
    "over_voltage", "over_current", "sink_over_current", "over_power", "under_voltage",
    "watchdog_time", "watchdog_on", "watchdog_off",
    "measure", "error", "nominal_voltage", "nominal_current", "nominal_power",
)


def _number(value: float) -> str:
    """A number as it goes into a command: short, exact to 6 significant digits."""
    text = format(value, ".6g")
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class CommandSet:
    """How one instrument family is programmed.

    ``commands`` maps an action of :data:`ACTIONS` to its template (``{}`` takes the number);
    an action missing from it is one the family cannot do. ``idn`` is a regular expression the
    manufacturer and model fields of ``*IDN?`` must match. ``ranges`` lists the output ranges
    (for SMUs the source ranges a step must fit in one of; for the others the one range), or is
    empty when the instrument reports its own (``nominal_*`` queries). ``measure_fields`` are
    the positions of volts and amps in the reply to ``measure`` (fields split at ``,`` or
    ``;``, units after a number ignored); ``current_sign`` turns the instrument's sign of
    current into cellbench's (positive charges the cell). ``levels`` overrides how the number
    of an action is written (the 2450's over-voltage protection takes one of a list of
    levels). ``watchdog`` says whether the family has a communication watchdog.
    """

    name: str
    kind: Kind
    description: str
    idn: str
    commands: Mapping[str, str]
    ranges: tuple[SourceRange, ...] = ()
    reset: tuple[str, ...] = ("*RST", "*CLS")
    setup: tuple[str, ...] = ()
    measure_fields: tuple[int, int] = (0, 1)
    current_sign: float = 1.0
    no_error: str = "0"
    levels: Mapping[str, Callable[[float], str]] = field(default_factory=dict)
    example_idn: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.commands) - set(ACTIONS)
        if unknown:
            raise ValueError(f"command set {self.name}: unknown actions {sorted(unknown)}")
        object.__setattr__(self, "commands", MappingProxyType(dict(self.commands)))

    def can(self, action: str) -> bool:
        """True when the family has ``action``."""
        return action in self.commands

    def command(self, action: str, value: float | None = None) -> str:
        """The command line for ``action`` (with ``value`` written in, for those that take one).

        Raises KeyError for an action the family lacks: the drivers ask :meth:`can` first.
        """
        template = self.commands[action]
        if "{}" not in template:
            return template
        if value is None or not math.isfinite(value):
            raise ValueError(f"{self.name}: {action} needs a finite number, not {value!r}")
        written = self.levels[action](value) if action in self.levels else _number(value)
        return template.replace("{}", written)

    @property
    def watchdog(self) -> bool:
        """True when the family switches its output off after a silence (the watchdog)."""
        return self.can("watchdog_time") and self.can("watchdog_on")

    def matches(self, idn: str) -> bool:
        """True when an ``*IDN?`` reply names an instrument of this family."""
        maker_model = ",".join(part.strip() for part in idn.split(",")[:2])
        return re.search(self.idn, maker_model, re.IGNORECASE) is not None


# --- Overrides ---------------------------------------------------------------------------------

#: The Keithley 2450's over-voltage protection levels (V); it takes the name of one (PROT20).
_K2450_OVP_LEVELS = (2, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 180)


def _k2450_ovp(volts: float) -> str:
    """The smallest 2450 protection level at or above ``volts``; NONE above the highest."""
    level = next((v for v in _K2450_OVP_LEVELS if v >= volts), None)
    return "NONE" if level is None else f"PROT{level}"


# --- The tables --------------------------------------------------------------------------------

#: The SMU actions shared by the Keithley 2400 family (SCPI, front-panel language SCPI).
KEITHLEY_2400 = CommandSet(
    name="keithley-2400",
    kind=Kind.SMU,
    description="Keithley 2400-family SourceMeter (2400, 2401, 2410, 2420, 2440)",
    idn=r"KEITHLEY.*MODEL 24[0-4]\d",
    example_idn="KEITHLEY INSTRUMENTS INC.,MODEL 2400,4105211,C32   Oct  4 2010 14:20:11/A02  /S/K",
    ranges=(SourceRange(0.105, 210.0), SourceRange(1.05, 21.0)),
    setup=(":SOUR:CLE:AUTO OFF", ":SENS:FUNC:CONC ON", ":FORM:ELEM VOLT,CURR",
           ":SOUR:CURR:RANG:AUTO OFF", ":SOUR:VOLT:RANG:AUTO OFF"),
    commands={
        "output_on": ":OUTP ON", "output_off": ":OUTP OFF",
        "source_current": ":SOUR:FUNC CURR", "source_voltage": ":SOUR:FUNC VOLT",
        "current": ":SOUR:CURR:LEV {}", "voltage": ":SOUR:VOLT:LEV {}",
        "current_range": ":SOUR:CURR:RANG {}", "voltage_range": ":SOUR:VOLT:RANG {}",
        "voltage_compliance": ":SENS:VOLT:PROT {}", "current_compliance": ":SENS:CURR:PROT {}",
        "over_voltage": ":SOUR:VOLT:PROT {}",
        "measure": ":READ?", "error": ":SYST:ERR?",
    },
)

#: The Keithley 2450 in its SCPI command set: limits instead of compliance, one measure
#: function at a time (so two queries in one line), protection by named level.
KEITHLEY_2450 = CommandSet(
    name="keithley-2450",
    kind=Kind.SMU,
    description="Keithley 2450/2460/2461 SourceMeter (SCPI command set)",
    idn=r"KEITHLEY.*MODEL 24[5-6]\d",
    example_idn="KEITHLEY INSTRUMENTS,MODEL 2450,04096218,1.7.12b",
    ranges=(SourceRange(0.105, 210.0), SourceRange(1.05, 21.0)),
    setup=(":SOUR:CURR:RANG:AUTO OFF", ":SOUR:VOLT:RANG:AUTO OFF"),
    commands={
        "output_on": ":OUTP ON", "output_off": ":OUTP OFF",
        "source_current": ":SOUR:FUNC CURR", "source_voltage": ":SOUR:FUNC VOLT",
        "current": ":SOUR:CURR {}", "voltage": ":SOUR:VOLT {}",
        "current_range": ":SOUR:CURR:RANG {}", "voltage_range": ":SOUR:VOLT:RANG {}",
        "voltage_compliance": ":SOUR:CURR:VLIM {}", "current_compliance": ":SOUR:VOLT:ILIM {}",
        "over_voltage": ":SOUR:VOLT:PROT {}",
        "measure": ":MEAS:VOLT?;:MEAS:CURR?", "error": ":SYST:ERR?",
    },
    levels={"over_voltage": _k2450_ovp},
)

#: Keysight (formerly Agilent) B2900 precision SMUs, channel 1.
KEYSIGHT_B2900 = CommandSet(
    name="keysight-b2900",
    kind=Kind.SMU,
    description="Keysight B2900-family precision SMU (B2901A/B2902A/B2911A/B2912A), channel 1",
    idn=r"(KEYSIGHT|AGILENT).*B29[0-6]\d",
    example_idn="Keysight Technologies,B2901A,MY51140102,3.4.2011.5100",
    ranges=(SourceRange(0.1, 210.0), SourceRange(1.0, 21.0), SourceRange(1.5, 6.0)),
    setup=(":FORM:ELEM:SENS VOLT,CURR", ":SOUR1:CURR:RANG:AUTO OFF",
           ":SOUR1:VOLT:RANG:AUTO OFF"),
    commands={
        "output_on": ":OUTP1 ON", "output_off": ":OUTP1 OFF",
        "source_current": ":SOUR1:FUNC:MODE CURR", "source_voltage": ":SOUR1:FUNC:MODE VOLT",
        "current": ":SOUR1:CURR {}", "voltage": ":SOUR1:VOLT {}",
        "current_range": ":SOUR1:CURR:RANG {}", "voltage_range": ":SOUR1:VOLT:RANG {}",
        "voltage_compliance": ":SENS1:VOLT:PROT {}", "current_compliance": ":SENS1:CURR:PROT {}",
        "measure": ":MEAS? (@1)", "error": ":SYST:ERR?",
    },
)

#: EA Elektro-Automatik PSB 9000/10000 bidirectional supplies (source and sink in one unit).
#: The ranges come from the instrument (SYST:NOM:...?). Its measurement carries units and a
#: negative current while sinking.
EA_PSB = CommandSet(
    name="ea-psb",
    kind=Kind.BIDIRECTIONAL,
    description="EA Elektro-Automatik PSB 9000 / 10000 bidirectional DC supply",
    idn=r"(EA|ELEKTRO-AUTOMATIK).*PSB",
    example_idn="EA Elektro-Automatik GmbH & Co. KG, PSB 10080-60, 2222220001, V2.03 15.08.2022",
    setup=("SYST:LOCK ON",),
    commands={
        "output_on": "OUTP ON", "output_off": "OUTP OFF",
        "voltage": "SOUR:VOLT {}", "current": "SOUR:CURR {}", "power": "SOUR:POW {}",
        "sink_current": "SINK:CURR {}", "sink_power": "SINK:POW {}",
        "over_voltage": "SOUR:VOLT:PROT {}", "over_current": "SOUR:CURR:PROT {}",
        "sink_over_current": "SINK:CURR:PROT {}",
        "watchdog_time": "SYST:COMM:WATC:TIM {}", "watchdog_on": "SYST:COMM:WATC ON",
        "watchdog_off": "SYST:COMM:WATC OFF",
        "measure": "MEAS:ARR?", "error": "SYST:ERR?",
        "nominal_voltage": "SYST:NOM:VOLT?", "nominal_current": "SYST:NOM:CURR?",
        "nominal_power": "SYST:NOM:POW?",
    },
)

#: A one-quadrant supply in plain SCPI-1999 style (Keysight E36xx, Rigol DP800, R&S NGx...).
SCPI_SUPPLY = CommandSet(
    name="scpi-supply",
    kind=Kind.SUPPLY,
    description="SCPI DC power supply (Keysight E36xx, Rigol DP800, R&S NGx and alike)",
    idn=r".",
    example_idn="Keysight Technologies,E36312A,MY57010001,1.0.4-1.0.3-1.04",
    commands={
        "output_on": "OUTP ON", "output_off": "OUTP OFF",
        "voltage": "VOLT {}", "current": "CURR {}",
        "over_voltage": "VOLT:PROT {}", "over_current": "CURR:PROT {}",
        "measure": "MEAS:VOLT?;:MEAS:CURR?", "error": "SYST:ERR?",
        "nominal_voltage": "VOLT? MAX", "nominal_current": "CURR? MAX",
    },
)

#: TDK-Lambda Genesys+ / GH supplies: the generic supply with a communication watchdog.
TDK_GENESYS = CommandSet(
    name="tdk-genesys",
    kind=Kind.SUPPLY,
    description="TDK-Lambda Genesys+ / GH DC supply (with communication watchdog)",
    idn=r"TDK.?LAMBDA.*G",
    example_idn="TDK-LAMBDA,GH10-100,12A3456,GH:1.2.3",
    commands={
        **SCPI_SUPPLY.commands,
        "watchdog_time": "SYST:COMM:WATC:TIM {}", "watchdog_on": "SYST:COMM:WATC ON",
        "watchdog_off": "SYST:COMM:WATC OFF",
    },
)

#: An electronic load in plain SCPI style (Keysight EL3x, Rigol DL3000, R&S NGU-style...);
#: it reports the current it sinks as positive.
SCPI_LOAD = CommandSet(
    name="scpi-load",
    kind=Kind.LOAD,
    description="SCPI electronic load (Keysight EL30000, Rigol DL3000, Siglent SDL and alike)",
    idn=r".",
    example_idn="RIGOL TECHNOLOGIES,DL3021,DL3A000000001,00.01.02.00.01",
    current_sign=-1.0,
    commands={
        "output_on": "INP ON", "output_off": "INP OFF",
        "function_current": "FUNC CURR", "function_voltage": "FUNC VOLT",
        "function_power": "FUNC POW", "function_resistance": "FUNC RES",
        "current": "CURR {}", "voltage": "VOLT {}", "power": "POW {}", "resistance": "RES {}",
        "current_limit": "VOLT:ILIM {}",
        "over_current": "CURR:PROT {}", "under_voltage": "VOLT:PROT:LOW {}",
        "measure": "MEAS:VOLT?;:MEAS:CURR?", "error": "SYST:ERR?",
        "nominal_voltage": "VOLT? MAX", "nominal_current": "CURR? MAX",
        "nominal_power": "POW? MAX",
    },
)

#: Every family, most specific first: identification takes the first whose pattern matches.
COMMAND_SETS: dict[str, CommandSet] = {
    c.name: c for c in (KEITHLEY_2400, KEITHLEY_2450, KEYSIGHT_B2900, EA_PSB, TDK_GENESYS,
                        SCPI_SUPPLY, SCPI_LOAD)
}


def identify(idn: str, kind: Kind | None = None) -> CommandSet | None:
    """The command set whose ``*IDN?`` pattern matches ``idn`` (of ``kind`` if given), or None.

    The generic supply and load match any instrument; they are chosen only for their kind.
    """
    for candidate in COMMAND_SETS.values():
        generic = candidate.idn == "."
        if (kind is None and generic) or (kind is not None and candidate.kind is not kind):
            continue
        if candidate.matches(idn):
            return candidate
    return None


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_numbers(reply: str) -> list[float]:
    """The numbers of a reply split at ``,`` and ``;``, each field's leading number (a unit
    after it is ignored: ``12.00 V``); ValueError naming the field that holds none."""
    values = []
    for part in re.split(r"[,;]", reply):
        found = _NUMBER.match(part.strip())
        if found is None:
            raise ValueError(f"{part.strip()!r} is not a number")
        values.append(float(found.group()))
    return values

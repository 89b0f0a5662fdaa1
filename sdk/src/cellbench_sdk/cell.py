"""An equivalent-circuit model of a bank of lithium-ion cells, vectorised across all cells.

The SDK holds it so that every plugin that needs a cell uses the same one: the simulated
channels of cellbench-sim, and the emulators that put a cell behind an instrument's terminals
(cellbench-scpi), whose results can then be compared with the simulation's.

Each cell is an open-circuit voltage source OCV(SOC) in series with a resistance R0 and one RC
pair (R1 parallel to a capacitance, time constant tau), with a lumped thermal mass that exchanges
heat with its ambient::

    terminal V = OCV(SOC) + I·R0 + v_rc          (I > 0 charges the cell)

One call to :meth:`CellBank.advance` moves every cell forward by ``dt`` under its channel's
setpoint with one numpy operation per quantity for the whole bank, so 10,000 cells cost about as
much Python as one.

Assumptions, chosen to keep the model readable:

* the current is constant during ``dt``; the RC pair is integrated exactly for that current;
* resistances follow an Arrhenius law in the cell temperature and rise towards SOC 0;
  tau does not change;
* coulombic efficiency applies to charging: SOC rises by η·I·dt/Q, falls by I·dt/Q;
* heat is the Joule loss in R0 and R1 (no entropic heat), exchanged with the ambient through h·A;
* the cells age (see :mod:`cellbench_sdk.ageing`): capacity fades and R0, R1 grow with time and
  charge passed; the state of charge is kept as capacity fades (the charge lost is lost from
  the cell's content too).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from cellbench_sdk.ageing import (
    MIN_CAPACITY_FRACTION,
    SECONDS_PER_YEAR,
    Ageing,
    CellAgeing,
    ageing_parameters,
)
from cellbench_sdk.physics import AS_PER_AH, arrhenius

FloatArray = npt.NDArray[np.float64]
ModeArray = npt.NDArray[np.int8]

#: Smallest source voltage used to size constant-power and power-limited currents (V); keeps
#: the arithmetic finite for a cell driven to (or below) 0 V.
_MIN_SOURCE_V = 1e-3


# --- Open-circuit voltage ----------------------------------------------------------------------


class OcvCurve:
    """OCV(SOC) of a chemistry: a piecewise-linear table, extrapolated linearly beyond it.

    Outside SOC 0..1 the voltage keeps falling (over-discharge) or rising (overcharge) with the
    given slopes, so voltage limits are always reached.
    """

    def __init__(
        self,
        table: list[tuple[float, float]],
        slope_below: float,
        slope_above: float,
    ) -> None:
        """``table`` holds (SOC, OCV in V) pairs; the slopes are in V per unit SOC."""
        soc = np.array([s for s, _ in table], dtype=np.float64)
        volt = np.array([v for _, v in table], dtype=np.float64)
        if (
            soc[0] != 0.0
            or soc[-1] != 1.0
            or np.any(np.diff(soc) <= 0)
            or np.any(np.diff(volt) <= 0)
        ):
            raise ValueError("an OCV table must rise strictly from SOC 0 to SOC 1")
        # One extra knot on each side (at SOC -1 and 2) carries the extrapolation slopes; the
        # outermost segments extend beyond those knots as well.
        self.soc = np.concatenate(([-1.0], soc, [2.0]))
        self.voltage_v = np.concatenate(([volt[0] - slope_below], volt, [volt[-1] + slope_above]))
        self.slope = np.diff(self.voltage_v) / np.diff(self.soc)

    def __call__(self, soc: FloatArray) -> FloatArray:
        """OCV (V) at each state of charge in ``soc``."""
        return self.with_slope(soc)[0]

    def with_slope(self, soc: FloatArray) -> tuple[FloatArray, FloatArray]:
        """OCV (V) and its slope dOCV/dSOC (V per unit SOC) at each state of charge."""
        seg = np.clip(np.searchsorted(self.soc, soc, side="right") - 1, 0, len(self.slope) - 1)
        slope = self.slope[seg]
        return self.voltage_v[seg] + slope * (soc - self.soc[seg]), slope


# NMC-graphite: approximates the shape of the LG M50 (NMC811 / graphite-SiOx) full-cell OCV
# measured by Chen et al., J. Electrochem. Soc. 167 (2020) 080534, between 2.5 V at SOC 0 and
# 4.2 V at SOC 1: a knee below 10 %, a gently rising middle with the graphite stage shoulder
# around 3.6-3.7 V, and a steeper rise towards full charge.
# fmt: off
NMC = OcvCurve(
    [
        (0.000, 2.500), (0.010, 2.780), (0.020, 2.960), (0.035, 3.150), (0.050, 3.270),
        (0.075, 3.370), (0.100, 3.440), (0.150, 3.510), (0.200, 3.555), (0.300, 3.615),
        (0.400, 3.660), (0.500, 3.720), (0.600, 3.800), (0.700, 3.890), (0.800, 3.975),
        (0.900, 4.070), (0.950, 4.130), (1.000, 4.200),
    ],
    slope_below=30.0,
    slope_above=5.0,
)
# fmt: on

# LFP-graphite: approximates the shape of the A123 26650 LFP cell OCV reported by Prada et
# al., J. Electrochem. Soc. 159 (2012) A1508: the two-phase plateau near 3.3 V with the small
# step of the graphite stage transition around 65 % SOC, and steep ends at 2.5 V and 3.65 V.
# fmt: off
LFP = OcvCurve(
    [
        (0.000, 2.500), (0.010, 2.800), (0.020, 2.980), (0.035, 3.100), (0.050, 3.150),
        (0.075, 3.190), (0.100, 3.215), (0.200, 3.255), (0.300, 3.275), (0.400, 3.285),
        (0.500, 3.290), (0.600, 3.300), (0.650, 3.315), (0.700, 3.325), (0.800, 3.330),
        (0.900, 3.335), (0.950, 3.345), (0.980, 3.380), (0.990, 3.450), (1.000, 3.650),
    ],
    slope_below=40.0,
    slope_above=20.0,
)
# fmt: on

CHEMISTRIES: dict[str, OcvCurve] = {"nmc": NMC, "lfp": LFP}

# Resistances rise towards empty: pulse (HPPC) measurements of lithium-ion cells typically show
# two to three times the mid-SOC resistance near SOC 0, which is what makes high-rate discharges
# reach the cut-off voltage early. Factor applied to R0 and R1, by SOC (constant outside).
_RESISTANCE_SOC = np.array([0.00, 0.05, 0.10, 0.20, 0.30])
_RESISTANCE_FACTOR = np.array([3.00, 1.80, 1.35, 1.10, 1.00])


# --- Parameters --------------------------------------------------------------------------------


class CellParameters(BaseModel):
    """Nominal parameters of the cells of a bank and their cell-to-cell spread.

    The defaults describe a 2.5 Ah NMC 18650 power cell at 25 °C.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    chemistry: Literal["nmc", "lfp"] = "nmc"
    """Which OCV(SOC) curve the cells follow."""
    capacity_ah: Annotated[float, Field(gt=0)] = 2.5
    """Nominal capacity (Ah)."""
    capacity_spread: Annotated[float, Field(ge=0, le=0.3)] = 0.01
    """Relative standard deviation of the capacity across cells."""
    resistance_spread: Annotated[float, Field(ge=0, le=0.3)] = 0.05
    """Relative standard deviation of R0 and R1 across cells."""
    r0_ohm: Annotated[float, Field(gt=0)] = 0.030
    """Series resistance at 25 °C and mid SOC (Ω)."""
    r1_ohm: Annotated[float, Field(gt=0)] = 0.020
    """Resistance of the RC pair at 25 °C and mid SOC (Ω)."""
    tau_s: Annotated[float, Field(gt=0)] = 60.0
    """Time constant of the RC pair (s)."""
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.999
    """Coulombic efficiency: the fraction of the charge put in that can be taken out again."""
    activation_energy_j_per_mol: Annotated[float, Field(ge=0)] = 20_000.0
    """Arrhenius activation energy of the resistances (J/mol); 0 makes them temperature-free."""
    heat_capacity_j_per_k: Annotated[float, Field(gt=0)] = 45.0
    """Heat capacity of one cell (J/K)."""
    heat_transfer_w_per_k: Annotated[float, Field(gt=0)] = 0.05
    """Heat transfer coefficient times surface, h·A, to the ambient (W/K)."""
    ambient_c: Annotated[float, Field(ge=-80, le=200)] = 25.0
    """Initial ambient temperature, which is also the cells' initial temperature (°C)."""
    initial_soc: Annotated[float, Field(ge=0, le=1)] = 0.5
    """State of charge of every cell at the start."""
    seed: int = 0
    """Seed of the cell-to-cell spread: the same seed gives the same cells."""
    ageing: Ageing = "default"
    """Capacity fade and resistance growth: "none", "default" (the chemistry's figures), or a
    table of the parameters to change (see :class:`cellbench_sdk.ageing.AgeingParameters`)."""


# --- Inputs and outputs of one update ----------------------------------------------------------


class Mode(IntEnum):
    """What a cell's channel does during an update."""

    REST = 0  # no current
    CC = 1  # current_a
    CV = 2  # hold voltage_v, |I| at most current_a
    CCCV = 3  # current_a until voltage_v is reached, then hold it
    CP = 4  # power_w
    CR = 5  # discharge through resistance_ohm


@dataclass(slots=True)
class Setpoints:
    """The setpoint of every cell's channel: one entry per cell in each array.

    ``current_a`` is the current of CC and CCCV, and the current limit (magnitude) of CV.
    Entries a mode does not use are ignored.
    """

    mode: ModeArray
    current_a: FloatArray
    voltage_v: FloatArray
    power_w: FloatArray
    resistance_ohm: FloatArray

    @classmethod
    def rest(cls, count: int) -> Setpoints:
        """Every cell at rest."""
        return cls(
            np.zeros(count, dtype=np.int8),
            np.zeros(count),
            np.zeros(count),
            np.zeros(count),
            np.ones(count),
        )


class OutputRange(NamedTuple):
    """What a channel can deliver; the current is limited so the output stays inside it."""

    voltage_min_v: float
    voltage_max_v: float
    current_max_a: float
    power_max_w: float = math.inf


class CellOutputs(NamedTuple):
    """Terminal voltage (V), current (A) and temperature (°C) of the updated cells."""

    voltage_v: FloatArray
    current_a: FloatArray
    temperature_c: FloatArray


# --- The bank ----------------------------------------------------------------------------------


def _screened_normal(rng: np.random.Generator, count: int) -> FloatArray:
    """``count`` standard normal draws within ±3: cells beyond 3 sd would not pass a production
    line's screening, and the bound keeps every parameter positive."""
    z = rng.standard_normal(count)
    while (outside := np.abs(z) > 3.0).any():
        z[outside] = rng.standard_normal(int(outside.sum()))
    return z


class CellBank:
    """``count`` cells drawn from ``params``; its arrays hold one entry per cell.

    State: ``soc``, ``v_rc`` (V across the RC pair), ``temperature_c``, ``ambient_c`` (settable),
    the last terminal ``voltage_v`` and ``current_a``, ``capacity_ah`` (as aged so far) and
    ``ageing`` (None without ageing). Per-cell parameters: ``fresh_capacity_ah``, ``r0_ohm``,
    ``r1_ohm`` (fresh, at 25 °C and mid SOC).
    """

    def __init__(self, count: int, params: CellParameters | None = None) -> None:
        if count < 1:
            raise ValueError(f"a cell bank needs at least one cell, not {count}")
        p = params or CellParameters()
        self.params = p
        self.count = count
        self.ocv = CHEMISTRIES[p.chemistry]

        rng = np.random.default_rng(p.seed)
        capacity_z = _screened_normal(rng, count)
        resistance_z = _screened_normal(rng, count)
        self.fresh_capacity_ah: FloatArray = p.capacity_ah * (
            1.0 + p.capacity_spread * capacity_z)
        self.capacity_ah: FloatArray = self.fresh_capacity_ah.copy()
        resistance_factor = 1.0 + p.resistance_spread * resistance_z
        self.r0_ohm: FloatArray = p.r0_ohm * resistance_factor
        self.r1_ohm: FloatArray = p.r1_ohm * resistance_factor
        self._soc_per_coulomb = 1.0 / (self.capacity_ah * AS_PER_AH)
        ageing = ageing_parameters(p.chemistry, p.ageing)
        self.ageing = None if ageing is None else CellAgeing(ageing, self.fresh_capacity_ah)

        self.soc: FloatArray = np.full(count, p.initial_soc)
        self.v_rc: FloatArray = np.zeros(count)
        self.temperature_c: FloatArray = np.full(count, p.ambient_c)
        self.ambient_c: FloatArray = np.full(count, p.ambient_c)
        self.voltage_v: FloatArray = self.ocv(self.soc)
        self.current_a: FloatArray = np.zeros(count)

    def advance(
        self,
        dt: float | FloatArray,
        setpoints: Setpoints,
        limits: OutputRange,
        cells: slice | None = None,
    ) -> CellOutputs:
        """Move the cells forward by ``dt`` seconds (a scalar, or one value per updated cell).

        ``setpoints`` covers the whole bank; ``cells`` picks the cells to update (all by default).
        The state arrays are updated in place; the returned arrays are the new values of the
        updated cells.
        """
        sel = slice(None) if cells is None else cells
        p = self.params
        soc, v_rc, temp = self.soc[sel], self.v_rc[sel], self.temperature_c[sel]
        soc_per_coulomb = self._soc_per_coulomb[sel]

        scale = np.interp(soc, _RESISTANCE_SOC, _RESISTANCE_FACTOR) * arrhenius(
            temp, -p.activation_energy_j_per_mol  # resistance falls as the cell warms
        )
        if self.ageing is not None:
            scale *= self.ageing.resistance_factor[sel]
        r0 = self.r0_ohm[sel] * scale
        r1 = self.r1_ohm[sel] * scale
        a = np.exp(-dt / p.tau_s)  # decay of v_rc over dt

        # For a constant current I over dt, the terminal voltage at the end of dt is
        # source + r_eff·I: the RC pair charges by R1(1-a)·I and the OCV moves along its slope
        # with the charge passed (which keeps CV, CP and CR accurate for long steps too).
        ocv, slope = self.ocv.with_slope(soc)
        source = ocv + a * v_rc
        r_eff = r0 + r1 * (1.0 - a) + slope * dt * soc_per_coulomb

        current = self._current(setpoints, sel, source, r_eff, limits)

        gain = np.where(current > 0.0, p.efficiency, 1.0)
        soc_new = soc + gain * current * dt * soc_per_coulomb
        v_rc_new = a * v_rc + r1 * (1.0 - a) * current
        # Joule heat in R0, and in R1 from the mean of the squared RC voltage over dt.
        heat_w = current * current * r0 + 0.5 * (v_rc * v_rc + v_rc_new * v_rc_new) / r1
        hold = np.exp(-dt * p.heat_transfer_w_per_k / p.heat_capacity_j_per_k)
        t_steady = self.ambient_c[sel] + heat_w / p.heat_transfer_w_per_k
        temp_new = t_steady + (temp - t_steady) * hold
        voltage = self.ocv(soc_new) + current * r0 + v_rc_new

        self.soc[sel] = soc_new
        self.v_rc[sel] = v_rc_new
        self.temperature_c[sel] = temp_new
        self.voltage_v[sel] = voltage
        self.current_a[sel] = current
        if self.ageing is not None:
            # The capacity and resistances of the next update: aged at this one's temperature.
            self.ageing.advance(dt, current, temp, sel)
            self.capacity_ah[sel] = self.fresh_capacity_ah[sel] * self.ageing.capacity_fraction[sel]
            self._soc_per_coulomb[sel] = 1.0 / (self.capacity_ah[sel] * AS_PER_AH)
        return CellOutputs(voltage, current, temp_new)

    @staticmethod
    def _current(
        sp: Setpoints, sel: slice, source: FloatArray, r_eff: FloatArray, limits: OutputRange
    ) -> FloatArray:
        """The current of each selected cell for its mode, inside the channel's output range."""
        i_set = sp.current_a[sel]
        # Constant voltage: the current that brings the terminal voltage to the setpoint at the
        # end of dt.
        i_cv = (sp.voltage_v[sel] - source) / r_eff
        limit = np.abs(i_set)
        cv = np.clip(i_cv, -limit, limit)
        cccv: FloatArray = np.where(i_set >= 0.0, np.minimum(i_set, i_cv), np.maximum(i_set, i_cv))
        # Constant power: r_eff·I² + E·I - P = 0, the root nearest to zero, written so that it
        # does not cancel for small P. A discharge beyond what the cell can deliver
        # (discriminant < 0) gets the current of maximum power, -E/(2·r_eff).
        power = sp.power_w[sel]
        e = np.maximum(source, _MIN_SOURCE_V)
        disc = e * e + 4.0 * r_eff * power
        cp: FloatArray = np.where(
            disc >= 0.0, 2.0 * power / (e + np.sqrt(np.maximum(disc, 0.0))), -e / (2.0 * r_eff)
        )
        cr = -source / (sp.resistance_ohm[sel] + r_eff)
        choices = [np.zeros_like(i_set), i_set, cv, cccv, cp, cr]  # in the order of Mode
        current = np.choose(sp.mode[sel], choices)

        # The channel's output range: current and power, then its compliance voltage (which
        # only ever reduces the current towards zero, so a resting cell stays at rest).
        i_max = np.minimum(limits.current_max_a, limits.power_max_w / e)
        current = np.clip(current, -i_max, i_max)
        i_up = np.maximum((limits.voltage_max_v - source) / r_eff, 0.0)
        i_down = np.minimum((limits.voltage_min_v - source) / r_eff, 0.0)
        result: FloatArray = np.clip(current, i_down, i_up)
        return result


# --- One cell in plain floats ------------------------------------------------------------------


class SingleCell:
    """One cell of a :class:`CellBank`, its state in plain floats: the same update as
    :meth:`CellBank.advance` for that cell (tests hold the two to rounding), about ten times
    faster for a single cell, where numpy's cost per call dominates. For a channel that runs
    one cell through many short internal steps (cellbench-sim's bulk channel).

    :meth:`of` copies cell ``k`` of a bank, :meth:`store` writes the state back; :meth:`state`
    and :meth:`restore` save and return to a point (for searching ahead).
    """

    __slots__ = (
        "_ambient",
        "_bank",
        "_calendar",
        "_capacity",
        "_cycles",
        "_efc_per_coulomb",
        "_fraction",
        "_fresh",
        "_growth",
        "_k",
        "_ocv_slope",
        "_ocv_soc",
        "_ocv_v",
        "_r0",
        "_r1",
        "_soc",
        "_temp",
        "_v_rc",
    )

    def __init__(self, bank: CellBank, k: int) -> None:
        self._bank, self._k = bank, k
        self._ocv_soc = bank.ocv.soc.tolist()
        self._ocv_v = bank.ocv.voltage_v.tolist()
        self._ocv_slope = bank.ocv.slope.tolist()
        self._soc = self._v_rc = self._temp = self._capacity = 0.0
        self._calendar = self._cycles = self._fraction = self._growth = 0.0
        self._r0, self._r1 = float(bank.r0_ohm[k]), float(bank.r1_ohm[k])
        self._fresh = float(bank.fresh_capacity_ah[k])
        self._efc_per_coulomb = (0.0 if bank.ageing is None
                                 else float(bank.ageing._efc_per_coulomb[k]))
        self._ambient = 0.0
        self.load()

    @classmethod
    def of(cls, bank: CellBank, k: int = 0) -> SingleCell:
        """Cell ``k`` of ``bank`` as it is now."""
        return cls(bank, k)

    def load(self) -> None:
        """Take the cell's state from the bank again."""
        b, k = self._bank, self._k
        self._soc, self._v_rc = float(b.soc[k]), float(b.v_rc[k])
        self._temp, self._capacity = float(b.temperature_c[k]), float(b.capacity_ah[k])
        self._ambient = float(b.ambient_c[k])
        if b.ageing is not None:
            a = b.ageing
            self._calendar, self._cycles = float(a.calendar_s2[k]), float(a.cycle_efc[k])
            self._fraction = float(a.capacity_fraction[k])
            self._growth = float(a.resistance_factor[k])

    def store(self, voltage_v: float, current_a: float) -> None:
        """Write the cell's state (and its last terminal ``voltage_v``, ``current_a``) back
        into the bank."""
        b, k = self._bank, self._k
        b.soc[k], b.v_rc[k], b.temperature_c[k] = self._soc, self._v_rc, self._temp
        b.capacity_ah[k] = self._capacity
        b._soc_per_coulomb[k] = 1.0 / (self._capacity * AS_PER_AH)
        b.voltage_v[k], b.current_a[k] = voltage_v, current_a
        if b.ageing is not None:
            a = b.ageing
            a.calendar_s2[k], a.cycle_efc[k] = self._calendar, self._cycles
            a.capacity_fraction[k], a.resistance_factor[k] = self._fraction, self._growth

    def state(self) -> tuple[float, ...]:
        """The cell's state, for :meth:`restore`."""
        return (self._soc, self._v_rc, self._temp, self._capacity, self._calendar,
                self._cycles, self._fraction, self._growth)

    def restore(self, state: tuple[float, ...]) -> None:
        """Return to a :meth:`state`."""
        (self._soc, self._v_rc, self._temp, self._capacity, self._calendar, self._cycles,
         self._fraction, self._growth) = state

    def _ocv(self, soc: float) -> tuple[float, float]:
        knots = self._ocv_soc
        seg = min(max(bisect.bisect_right(knots, soc) - 1, 0), len(self._ocv_slope) - 1)
        slope = self._ocv_slope[seg]
        return self._ocv_v[seg] + slope * (soc - knots[seg]), slope

    def advance(self, dt: float, mode: Mode, setpoints: Setpoints, limits: OutputRange
                ) -> tuple[float, float, float]:
        """Move the cell forward by ``dt`` seconds under ``mode`` with the cell's entries of
        ``setpoints``; its terminal voltage (V), current (A) and temperature (°C) then."""
        b, k = self._bank, self._k
        p = b.params
        soc, v_rc, temp = self._soc, self._v_rc, self._temp
        soc_per_coulomb = 1.0 / (self._capacity * AS_PER_AH)
        scale = _resistance_factor(soc) * float(arrhenius(temp, -p.activation_energy_j_per_mol))
        if b.ageing is not None:
            scale *= self._growth
        r0 = self._r0 * scale
        r1 = self._r1 * scale
        a = math.exp(-dt / p.tau_s)
        ocv, slope = self._ocv(soc)
        source = ocv + a * v_rc
        r_eff = r0 + r1 * (1.0 - a) + slope * dt * soc_per_coulomb
        current = _one_current(mode, setpoints, k, source, r_eff, limits)

        gain = p.efficiency if current > 0.0 else 1.0
        soc_new = soc + gain * current * dt * soc_per_coulomb
        v_rc_new = a * v_rc + r1 * (1.0 - a) * current
        heat_w = current * current * r0 + 0.5 * (v_rc * v_rc + v_rc_new * v_rc_new) / r1
        hold = math.exp(-dt * p.heat_transfer_w_per_k / p.heat_capacity_j_per_k)
        t_steady = self._ambient + heat_w / p.heat_transfer_w_per_k
        temp_new = t_steady + (temp - t_steady) * hold
        voltage = self._ocv(soc_new)[0] + current * r0 + v_rc_new
        self._soc, self._v_rc, self._temp = soc_new, v_rc_new, temp_new
        if b.ageing is not None:  # at the new temperature, as the bank's views see it
            self._age(dt, current, temp_new)
        return voltage, current, temp_new

    def _age(self, dt: float, current: float, temperature_c: float) -> None:
        """:meth:`CellAgeing.advance` for this cell."""
        ageing = self._bank.ageing
        assert ageing is not None
        p = ageing.params
        a_cal = float(arrhenius(temperature_c, p.calendar_activation_j_per_mol))
        a_cyc = float(arrhenius(temperature_c, p.cycle_activation_j_per_mol))
        self._calendar += a_cal * a_cal * dt
        self._cycles += a_cyc * abs(current) * dt * self._efc_per_coulomb
        years = math.sqrt(self._calendar / SECONDS_PER_YEAR)
        kilo_efc = self._cycles / 1000.0
        fade = p.calendar_fade_first_year * years + p.cycle_fade_per_1000_efc * kilo_efc
        self._fraction = max(1.0 - fade, MIN_CAPACITY_FRACTION)
        self._growth = (1.0 + p.calendar_growth_first_year * years
                        + p.cycle_growth_per_1000_efc * kilo_efc)
        self._capacity = self._fresh * self._fraction


def _resistance_factor(soc: float) -> float:
    """``np.interp(soc, _RESISTANCE_SOC, _RESISTANCE_FACTOR)`` for one SOC."""
    knots = _RESISTANCE_SOC_LIST
    if soc <= knots[0]:
        return _RESISTANCE_FACTOR_LIST[0]
    if soc >= knots[-1]:
        return _RESISTANCE_FACTOR_LIST[-1]
    seg = bisect.bisect_right(knots, soc) - 1
    f0, f1 = _RESISTANCE_FACTOR_LIST[seg], _RESISTANCE_FACTOR_LIST[seg + 1]
    return f0 + (f1 - f0) * (soc - knots[seg]) / (knots[seg + 1] - knots[seg])


_RESISTANCE_SOC_LIST: list[float] = _RESISTANCE_SOC.tolist()
_RESISTANCE_FACTOR_LIST: list[float] = _RESISTANCE_FACTOR.tolist()


def _one_current(mode: Mode, sp: Setpoints, k: int, source: float, r_eff: float,
                 limits: OutputRange) -> float:
    """:meth:`CellBank._current` for one cell."""
    i_set = float(sp.current_a[k])
    e = max(source, _MIN_SOURCE_V)
    if mode == Mode.REST:
        current = 0.0
    elif mode == Mode.CC:
        current = i_set
    elif mode == Mode.CV or mode == Mode.CCCV:
        i_cv = (float(sp.voltage_v[k]) - source) / r_eff
        if mode == Mode.CV:
            current = min(max(i_cv, -abs(i_set)), abs(i_set))
        else:
            current = min(i_set, i_cv) if i_set >= 0.0 else max(i_set, i_cv)
    elif mode == Mode.CP:
        power = float(sp.power_w[k])
        disc = e * e + 4.0 * r_eff * power
        current = (2.0 * power / (e + math.sqrt(disc)) if disc >= 0.0
                   else -e / (2.0 * r_eff))
    else:
        current = -source / (float(sp.resistance_ohm[k]) + r_eff)
    i_max = min(limits.current_max_a, limits.power_max_w / e)
    current = min(max(current, -i_max), i_max)
    i_up = max((limits.voltage_max_v - source) / r_eff, 0.0)
    i_down = min((limits.voltage_min_v - source) / r_eff, 0.0)
    return min(max(current, i_down), i_up)

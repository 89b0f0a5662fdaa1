"""Ageing of the simulated cells: capacity fade and resistance growth with time and charge
throughput, temperature dependent, vectorised across a bank of cells.

An empirical model of the kind fitted to ageing tests of commercial cells, two mechanisms
added together:

* calendar ageing (SEI growth, whether the cell is used or not) grows with the square root of
  time, ``f_cal · a_cal(T) · sqrt(t / 1 year)`` (Broussely et al., J. Power Sources 97-98 (2001)
  13; Schmalstieg et al., J. Power Sources 257 (2014) 325);
* cycle ageing grows linearly with the charge passed, counted in equivalent full cycles (EFC:
  charge in plus charge out over twice the fresh capacity), ``f_cyc · a_cyc(T) · EFC / 1000``
  (Wang et al., J. Power Sources 196 (2011) 3942 fit ``Ah^0.55``; linear keeps a cycle-life
  test's fade a straight line, which is what the per-chemistry figures below describe).

Both follow Arrhenius in the cell temperature, ``a(T) = exp(Ea/R · (1/T_ref - 1/T))``, 1 at
25 °C. Capacity fades by the sum of the two fractions; the resistances R0 and R1 grow by the
sum of their own two fractions, with the same time and throughput.

When the temperature changes, each mechanism keeps the state that makes its law exact at
constant temperature: cycle ageing sums ``a_cyc(T)·dEFC`` (linear, so any history adds up);
calendar ageing sums ``a_cal(T)²·dt``, whose square root is ``a_cal·sqrt(t)`` at a constant T
(the usual equivalent-time treatment of a square-root law: its rate falls with the fade reached,
not with the time since manufacture).

Not modelled: the dependence on state of charge and depth of discharge, lithium plating below
about 10 °C (where real cycle ageing rises again as the cell gets colder), and the knee at the
end of life.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from cellbench_sdk.physics import AS_PER_AH, arrhenius

FloatArray = npt.NDArray[np.float64]

SECONDS_PER_YEAR = 365.0 * 86_400.0
#: Capacity never fades below this fraction of the fresh capacity: the model has no end of
#: life, and a positive capacity keeps the cell's arithmetic finite however long it runs.
MIN_CAPACITY_FRACTION = 0.05


class AgeingParameters(BaseModel):
    """How fast a chemistry ages, as a battery engineer quotes it: fractions at 25 °C."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    calendar_fade_first_year: Annotated[float, Field(ge=0, le=1)]
    """Fraction of the capacity lost by calendar ageing in the first year at 25 °C."""
    cycle_fade_per_1000_efc: Annotated[float, Field(ge=0, le=1)]
    """Fraction of the capacity lost per 1000 equivalent full cycles at 25 °C."""
    calendar_growth_first_year: Annotated[float, Field(ge=0)]
    """Relative growth of the resistances by calendar ageing in the first year at 25 °C."""
    cycle_growth_per_1000_efc: Annotated[float, Field(ge=0)]
    """Relative growth of the resistances per 1000 equivalent full cycles at 25 °C."""
    calendar_activation_j_per_mol: Annotated[float, Field(ge=0)]
    """Arrhenius activation energy of calendar ageing (J/mol)."""
    cycle_activation_j_per_mol: Annotated[float, Field(ge=0)]
    """Arrhenius activation energy of cycle ageing (J/mol)."""


class AgeingSettings(BaseModel):
    """Ageing parameters given one by one; those left out are the chemistry's defaults."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    calendar_fade_first_year: Annotated[float, Field(ge=0, le=1)] | None = None
    """See :class:`AgeingParameters`."""
    cycle_fade_per_1000_efc: Annotated[float, Field(ge=0, le=1)] | None = None
    """See :class:`AgeingParameters`."""
    calendar_growth_first_year: Annotated[float, Field(ge=0)] | None = None
    """See :class:`AgeingParameters`."""
    cycle_growth_per_1000_efc: Annotated[float, Field(ge=0)] | None = None
    """See :class:`AgeingParameters`."""
    calendar_activation_j_per_mol: Annotated[float, Field(ge=0)] | None = None
    """See :class:`AgeingParameters`."""
    cycle_activation_j_per_mol: Annotated[float, Field(ge=0)] | None = None
    """See :class:`AgeingParameters`."""


#: The ``ageing`` setting: none, the chemistry's defaults, or some parameters changed.
Ageing = Literal["none", "default"] | AgeingSettings

# Typical figures for commercial cells stored and cycled at 25 °C and mid SOC. NMC-graphite:
# about 4 % calendar fade in the first year and 15 % per 1000 full cycles (80 % after roughly
# 1200 cycles), calendar Ea near 50 kJ/mol (Schmalstieg et al. 2014 report a doubling of the
# calendar rate per 10-15 K). LFP-graphite: slower, about 3 % a year and 6 % per 1000 cycles,
# cycle Ea 31.5 kJ/mol (Wang et al. 2011). Resistance grows faster than capacity fades.
CHEMISTRY_AGEING: dict[str, AgeingParameters] = {
    "nmc": AgeingParameters(
        calendar_fade_first_year=0.04, cycle_fade_per_1000_efc=0.15,
        calendar_growth_first_year=0.06, cycle_growth_per_1000_efc=0.25,
        calendar_activation_j_per_mol=50_000.0, cycle_activation_j_per_mol=30_000.0,
    ),
    "lfp": AgeingParameters(
        calendar_fade_first_year=0.03, cycle_fade_per_1000_efc=0.06,
        calendar_growth_first_year=0.04, cycle_growth_per_1000_efc=0.10,
        calendar_activation_j_per_mol=50_000.0, cycle_activation_j_per_mol=31_500.0,
    ),
}


def ageing_parameters(chemistry: str, ageing: Ageing) -> AgeingParameters | None:
    """The ageing parameters the ``ageing`` setting means for ``chemistry``; None for none."""
    if ageing == "none":
        return None
    defaults = CHEMISTRY_AGEING[chemistry]
    if ageing == "default":
        return defaults
    assert isinstance(ageing, AgeingSettings)  # the Literal's values are handled above
    return defaults.model_copy(update=ageing.model_dump(exclude_none=True))


class CellAgeing:
    """The ageing state of ``count`` cells whose fresh capacities are ``fresh_capacity_ah``.

    State, one entry per cell: ``calendar_s2`` (the sum of ``a_cal(T)²·dt``, s) and
    ``cycle_efc`` (the sum of ``a_cyc(T)·dEFC``). :attr:`capacity_fraction` and
    :attr:`resistance_factor` follow from them.
    """

    def __init__(self, params: AgeingParameters, fresh_capacity_ah: FloatArray) -> None:
        self.params = params
        count = len(fresh_capacity_ah)
        self._efc_per_coulomb = 1.0 / (2.0 * AS_PER_AH * fresh_capacity_ah)
        self.calendar_s2: FloatArray = np.zeros(count)
        self.cycle_efc: FloatArray = np.zeros(count)
        self.capacity_fraction: FloatArray = np.ones(count)
        self.resistance_factor: FloatArray = np.ones(count)

    def advance(
        self, dt: float | FloatArray, current_a: FloatArray, temperature_c: FloatArray,
        sel: slice,
    ) -> None:
        """Age the cells ``sel`` by ``dt`` seconds at ``current_a`` and ``temperature_c``."""
        p = self.params
        a_cal = arrhenius(temperature_c, p.calendar_activation_j_per_mol)
        a_cyc = arrhenius(temperature_c, p.cycle_activation_j_per_mol)
        calendar = self.calendar_s2[sel] + a_cal * a_cal * dt
        cycles = self.cycle_efc[sel] + a_cyc * np.abs(current_a) * dt * self._efc_per_coulomb[sel]
        self.calendar_s2[sel] = calendar
        self.cycle_efc[sel] = cycles
        years = np.sqrt(calendar / SECONDS_PER_YEAR)
        kilo_efc = cycles / 1000.0
        fade = p.calendar_fade_first_year * years + p.cycle_fade_per_1000_efc * kilo_efc
        self.capacity_fraction[sel] = np.maximum(1.0 - fade, MIN_CAPACITY_FRACTION)
        self.resistance_factor[sel] = (
            1.0 + p.calendar_growth_first_year * years + p.cycle_growth_per_1000_efc * kilo_efc
        )


def fade_at(params: AgeingParameters, seconds: float, efc: float, temperature_c: float
            ) -> tuple[float, float]:
    """Closed form at a constant temperature: the capacity fraction left and the resistance
    factor after ``seconds`` and ``efc`` equivalent full cycles (what a benchmark or a plan
    author compares a simulated cycle-life test with)."""
    years = math.sqrt(seconds / SECONDS_PER_YEAR) * arrhenius(
        temperature_c, params.calendar_activation_j_per_mol)
    kilo_efc = efc / 1000.0 * arrhenius(temperature_c, params.cycle_activation_j_per_mol)
    fade = params.calendar_fade_first_year * years + params.cycle_fade_per_1000_efc * kilo_efc
    growth = (params.calendar_growth_first_year * years
              + params.cycle_growth_per_1000_efc * kilo_efc)
    return max(1.0 - fade, MIN_CAPACITY_FRACTION), 1.0 + growth

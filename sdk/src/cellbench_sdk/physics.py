"""Physical constants and the Arrhenius law shared by the cell model and its ageing."""

from __future__ import annotations

from typing import overload

import numpy as np
import numpy.typing as npt

GAS_CONSTANT = 8.314462618  # J/(mol·K)
KELVIN = 273.15
#: Temperature at which resistances and ageing rates are specified (°C).
REFERENCE_TEMPERATURE_C = 25.0
#: Coulombs per ampere-hour.
AS_PER_AH = 3600.0


@overload
def arrhenius(temperature_c: float, activation_j_per_mol: float) -> float: ...
@overload
def arrhenius(temperature_c: npt.NDArray[np.float64], activation_j_per_mol: float
              ) -> npt.NDArray[np.float64]: ...
def arrhenius(temperature_c: float | npt.NDArray[np.float64], activation_j_per_mol: float
              ) -> float | npt.NDArray[np.float64]:
    """How many times faster a process with this activation energy runs at ``temperature_c``
    (a number or an array of them) than at the reference temperature:
    ``exp(Ea/R · (1/T_ref - 1/T))``."""
    inverse_kelvin = 1.0 / (temperature_c + KELVIN) - 1.0 / (REFERENCE_TEMPERATURE_C + KELVIN)
    result: float | npt.NDArray[np.float64] = np.exp(
        -activation_j_per_mol / GAS_CONSTANT * inverse_kelvin)
    return result

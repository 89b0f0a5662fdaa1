"""Quantities with units as people write them (``"4.2 V"``, ``"C/20"``, ``"30 min"``): parsed
into SI values, and formatted back, by the rules plans and station files follow."""

from cellbench_core.station import Duration
from cellbench_core.units import (
    Dimension,
    UnitError,
    Value,
    format_number,
    format_value,
    parse_duration,
    parse_quantity,
    parse_value,
)

__all__ = [
    "Dimension",
    "Duration",
    "UnitError",
    "Value",
    "format_number",
    "format_value",
    "parse_duration",
    "parse_quantity",
    "parse_value",
]

"""Settings of a SIMSERV chamber, as a station file's [chambers.settings] gives them."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellbench_simserv.protocol import DEFAULT_PORT


class SimservSettings(BaseModel):
    """Where the controller listens, which chamber it drives, and the setpoints it may get."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    """The controller's address."""
    port: Annotated[int, Field(gt=0, lt=65536)] = DEFAULT_PORT
    """The controller's SIMSERV port."""
    chamber: Annotated[int, Field(ge=1)] = 1
    """The chamber's index on its controller (1 unless the controller drives several)."""
    humidity: bool = False
    """Whether the chamber controls relative humidity (controlled variable 2)."""
    temperature_min_c: float = -40.0
    """Lowest temperature setpoint sent (°C); lower ones are refused before sending."""
    temperature_max_c: float = 150.0
    """Highest temperature setpoint sent (°C)."""
    humidity_min_pct: Annotated[float, Field(ge=0, le=100)] = 10.0
    """Lowest humidity setpoint sent (%)."""
    humidity_max_pct: Annotated[float, Field(ge=0, le=100)] = 98.0
    """Highest humidity setpoint sent (%)."""
    alarm_messages: Annotated[int, Field(ge=0)] = 32
    """How many of the controller's messages ``read()`` scans for the texts of active alarms
    when the status word reports an alarm (each takes two or three commands; 0: none)."""
    timeout_s: Annotated[float, Field(gt=0)] = 2.0
    """How long each command waits for its reply (s)."""
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """How long connecting may take (s)."""

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        if self.temperature_min_c >= self.temperature_max_c:
            raise ValueError(f"temperature_min_c ({self.temperature_min_c} °C) must be below "
                             f"temperature_max_c ({self.temperature_max_c} °C)")
        if self.humidity_min_pct >= self.humidity_max_pct:
            raise ValueError(f"humidity_min_pct ({self.humidity_min_pct} %) must be below "
                             f"humidity_max_pct ({self.humidity_max_pct} %)")
        return self

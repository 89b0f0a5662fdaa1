"""Settings of the SCPI channel drivers, as a station file's ``[channels.settings]`` gives them."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cellbench_scpi.commands import COMMAND_SETS, Kind
from cellbench_scpi.resources import parse_resource

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InstrumentSettings(BaseModel):
    """One instrument: where it is, which command set it speaks, how long it may take."""

    model_config = _STRICT

    resource: str = Field(default="TCPIP::127.0.0.1::5025::SOCKET",
                          description="VISA resource: TCPIP::host::port::SOCKET, "
                                      "ASRL<port>::INSTR or USB0::vid::pid::serial::INSTR")
    command_set: str | None = Field(default=None,
                                    description="the family's table (keithley-2400, ...); "
                                                "default: chosen by *IDN?")
    timeout_s: float = Field(default=1.0, gt=0, le=60, description="seconds a reply may take")
    baud_rate: int = Field(default=9600, gt=0, description="serial resources only")

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        return parse_resource(value).text

    @field_validator("command_set")
    @classmethod
    def _command_set(cls, value: str | None) -> str | None:
        if value is not None and value not in COMMAND_SETS:
            raise ValueError(f"unknown command set {value!r}; known: {', '.join(COMMAND_SETS)}")
        return value

    def check_kind(self, kinds: tuple[Kind, ...], role: str) -> None:
        """Refuse a command set of another kind than ``kinds`` for this ``role``."""
        if self.command_set is not None and COMMAND_SETS[self.command_set].kind not in kinds:
            kind = COMMAND_SETS[self.command_set].kind.value
            raise ValueError(f"{role}: command set {self.command_set!r} is for a {kind}, not "
                             f"a {' or '.join(k.value for k in kinds)}")


class ChannelSettings(BaseModel):
    """What every SCPI channel shares: its protection margins, watchdog and pacing."""

    model_config = _STRICT

    protection_margin_v: float = Field(
        default=0.05, gt=0, le=5,
        description="how far beyond the safety limits (V) the instrument's own protection sits")
    protection_margin_a: float = Field(
        default=0.05, gt=0, le=50,
        description="how far beyond the current limits (A) the instrument's protection sits")
    watchdog_s: float = Field(
        default=5.0, ge=0, le=3600,
        description="instruments with a watchdog switch off after this silence (0: not armed)")
    temperature_query: str | None = Field(
        default=None, pattern=r"^[\x21-\x7e][\x20-\x7e]*\?$",
        description="a query of the (first) instrument that answers the cell's temperature in "
                    "°C, where it has a sensor input; without it the temperature is not a "
                    "number, which trips temperature limits")
    paced_speed: float | None = Field(
        default=None, gt=0,
        description="emulators only: the station's virtual clock runs this fast, as the "
                    "emulator's cell does")


class SingleSettings(ChannelSettings, InstrumentSettings):
    """One instrument that sources and sinks (an SMU or a bidirectional supply)."""


class SmuSettings(SingleSettings):
    """A source-measure unit."""

    @model_validator(mode="after")
    def _kind(self) -> Self:
        self.check_kind((Kind.SMU,), "scpi-smu")
        return self


class BidirectionalSettings(SingleSettings):
    """A bidirectional (regenerative) supply."""

    @model_validator(mode="after")
    def _kind(self) -> Self:
        self.check_kind((Kind.BIDIRECTIONAL,), "scpi-bidirectional")
        return self


class PairSettings(ChannelSettings):
    """A supply that charges and an electronic load that discharges the same cell; one of
    them may be left out (a charge-only or discharge-only channel)."""

    supply: InstrumentSettings | None = Field(default_factory=lambda: InstrumentSettings(
        resource="TCPIP::127.0.0.1::5025::SOCKET"))
    load: InstrumentSettings | None = Field(default_factory=lambda: InstrumentSettings(
        resource="TCPIP::127.0.0.1::5026::SOCKET"))
    only: Literal["supply", "load"] | None = Field(
        default=None, description="a charge-only (supply) or discharge-only (load) channel: "
                                  "the other instrument is left out")

    @model_validator(mode="before")
    @classmethod
    def _only(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("only") in ("supply", "load"):
            left_out = "load" if values["only"] == "supply" else "supply"
            values = {**values, left_out: None}
        return values

    @model_validator(mode="after")
    def _instruments(self) -> Self:
        if self.supply is None and self.load is None:
            raise ValueError("scpi-pair needs a supply, a load or both")
        if self.supply is not None:
            self.supply.check_kind((Kind.SUPPLY,), "supply")
        if self.load is not None:
            self.load.check_kind((Kind.LOAD,), "load")
        if (self.supply is not None and self.load is not None
                and self.supply.resource == self.load.resource):
            raise ValueError(f"supply and load are the same resource {self.load.resource!r}")
        return self

"""Settings of a Keysight 34970A / DAQ970A-family data logger, as a station file's
[devices.settings] gives them."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Channel kinds: a thermocouple of a type, or DC volts.
Kind = Literal["tc-b", "tc-e", "tc-j", "tc-k", "tc-n", "tc-r", "tc-s", "tc-t", "dcv"]
#: DC voltage ranges of the 34970A / DAQ970A multimeter, in volts.
DCV_RANGES = (0.1, 1.0, 10.0, 100.0, 300.0)


class LoggerChannel(BaseModel):
    """One channel of the scan list: where it is and what it measures."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ch: int = Field(description="slot and channel, as the logger numbers them: 101..340")
    kind: Kind = Field(description="tc-k, tc-j, tc-t (or tc-b/e/n/r/s): a thermocouple in "
                                   "°C; dcv: DC volts")
    range: float | None = Field(default=None, description="dcv: the range in volts (0.1, 1, "
                                                          "10, 100, 300); unset: autorange")

    @model_validator(mode="after")
    def _valid(self) -> Self:
        slot, number = divmod(self.ch, 100)
        if not (1 <= slot <= 3 and 1 <= number <= 40):
            raise ValueError(f"ch {self.ch} is no channel: slot 1..3 and channel 01..40, such "
                             f"as 101 or 320")
        if self.range is not None:
            if self.kind != "dcv":
                raise ValueError(f"range is for dcv channels, not {self.kind}")
            if self.range not in DCV_RANGES:
                raise ValueError(f"range {self.range:g} V is not one of "
                                 f"{', '.join(f'{r:g}' for r in DCV_RANGES)} V")
        return self


class ScpiLoggerSettings(BaseModel):
    """Where the logger is (a LAN socket or a serial port) and its scan list by signal name."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    address: str | None = Field(
        default=None, pattern=r"^\S+:\d{1,5}$",
        description="HOST:PORT of the logger's SCPI socket (port 5025 on a DAQ970A)")
    port: str | None = Field(default=None, min_length=1,
                             description="serial port of a 34970A, such as /dev/ttyUSB0")
    baudrate: int = Field(default=9600, gt=0, description="serial baud rate (port only)")
    flow_control: Literal["none", "xonxoff", "rtscts"] = Field(
        default="none", description="serial flow control, as set on the logger (port only)")
    timeout_s: float = Field(default=5.0, gt=0, le=120,
                             description="seconds a scan (READ?) or a reply may take")
    reset: bool = Field(default=True, description="send *RST before configuring (a known "
                                                  "state); false keeps the front panel's "
                                                  "other settings")
    channels: dict[str, LoggerChannel] = Field(
        min_length=1, description="signal name -> {ch, kind[, range]}")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.address is None) == (self.port is None):
            raise ValueError("give exactly one of address (HOST:PORT) and port (serial)")
        seen: dict[int, str] = {}
        for name, channel in self.channels.items():
            if not (name.isascii() and name.isidentifier() and name == name.lower()):
                raise ValueError(f"channels: signal name {name!r} must be lowercase letters, "
                                 f"digits and _ (such as t_cell1)")
            if channel.ch in seen:
                raise ValueError(f"channels: {name!r} and {seen[channel.ch]!r} both use "
                                 f"ch {channel.ch}")
            seen[channel.ch] = name
        return self

    @property
    def url(self) -> str:
        """The transport URL of the logger."""
        if self.address is not None:
            return f"tcp://{self.address}"
        flow = {"none": "", "xonxoff": "&xonxoff=1", "rtscts": "&rtscts=1"}[self.flow_control]
        return f"serial://{self.port}?baudrate={self.baudrate}{flow}"

"""Settings of an ESPEC chamber, as a station file's [chambers.settings] gives them."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EspecSettings(BaseModel):
    """Where the chamber's controller is (a serial port or a TCP serial server) and what it may
    be told."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    address: str | None = Field(
        default=None, pattern=r"^\S+:\d{1,5}$",
        description="HOST:PORT of a TCP serial server in front of the controller")
    port: str | None = Field(default=None, min_length=1,
                             description="serial port of the controller, such as /dev/ttyUSB0")
    baudrate: int = Field(default=9600, gt=0, description="serial baud rate (port only)")
    timeout_s: float = Field(default=1.0, gt=0, le=60, description="seconds a reply may take")
    humidity: bool = Field(default=False,
                           description="the chamber controls humidity (HUMI commands)")
    min_c: float = Field(default=-40.0, description="lowest temperature setpoint sent")
    max_c: float = Field(default=150.0, description="highest temperature setpoint sent")

    @model_validator(mode="after")
    def _one_connection(self) -> Self:
        if (self.address is None) == (self.port is None):
            raise ValueError("give exactly one of address (HOST:PORT) and port (serial)")
        if self.min_c >= self.max_c:
            raise ValueError(f"min_c {self.min_c:g} must be below max_c {self.max_c:g}")
        return self

    @property
    def url(self) -> str:
        """The transport URL of the controller."""
        if self.address is not None:
            return f"tcp://{self.address}"
        return f"serial://{self.port}?baudrate={self.baudrate}"

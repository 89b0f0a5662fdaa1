"""Settings of one Binder chamber, as a station file's [chambers.settings] gives them."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Framing = Literal["modbus-tcp", "rtu-over-tcp", "rtu"]
Family = Literal["MB1", "MB2"]


class BinderSettings(BaseModel):
    """Where the controller listens, how its frames travel, and the chamber's range."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    address: str = "127.0.0.1:10001"
    """``host:port`` of the controller (or of its Ethernet option) for the TCP framings."""
    framing: Framing = "rtu-over-tcp"
    """``modbus-tcp`` (MBAP header), ``rtu-over-tcp`` (RTU frames with CRC over a TCP socket,
    the controllers' Ethernet option on port 10001) or ``rtu`` (a serial line, ``port``)."""
    port: str | None = None
    """Serial device for ``framing = "rtu"`` (``/dev/ttyUSB0``)."""
    baudrate: Annotated[int, Field(gt=0)] = 9600
    """Serial line speed for ``framing = "rtu"``."""
    unit: Annotated[int, Field(ge=1, le=247)] = 1
    """Modbus unit (slave) id of the controller."""
    controller: Family = "MB1"
    """Controller family, which chooses the register map: ``MB1`` or ``MB2``."""
    has_humidity: bool = False
    """Whether the chamber controls relative humidity (KMF, MKF ... models)."""
    temperature_min_c: float = -40.0
    """Lowest temperature setpoint accepted (°C); lower ones are refused before sending."""
    temperature_max_c: float = 180.0
    """Highest temperature setpoint accepted (°C)."""
    timeout_s: Annotated[float, Field(gt=0)] = 1.0
    """How long one Modbus request may take before it fails with DeviceTimeout."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.temperature_min_c >= self.temperature_max_c:
            raise ValueError(
                f"temperature_min_c ({self.temperature_min_c} °C) must be below "
                f"temperature_max_c ({self.temperature_max_c} °C)"
            )
        if self.framing == "rtu":
            if not self.port:
                raise ValueError('framing = "rtu" needs the serial port: port = "/dev/ttyUSB0"')
        else:
            self.host_port()
        return self

    def host_port(self) -> tuple[str, int]:
        """``address`` split into host and port."""
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"address {self.address!r} is not host:port")
        return host, int(port)

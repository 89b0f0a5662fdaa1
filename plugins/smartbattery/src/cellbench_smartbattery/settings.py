"""Settings of a smart battery, as a station file's [devices.settings] gives them."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellbench_smartbattery.sbs import BATTERY_ADDRESS, TI_CELL_VOLTAGE_COMMANDS


class SmartBatterySettings(BaseModel):
    """Which SMBus adapter reaches the battery, and how the battery is read."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bus: Literal["smbus2", "cp2112", "emulated"] = Field(
        default="smbus2", description="the adapter: a Linux I2C adapter (/dev/i2c-N through "
        "smbus2), a Silicon Labs CP2112 USB bridge, or the plugin's register model")
    i2c_bus: int | str = Field(
        default=1, description="smbus2: the adapter's number N of /dev/i2c-N, or its path")
    cp2112_serial: str | None = Field(
        default=None, min_length=1,
        description="cp2112: the bridge's USB serial number (needed when several are "
                    "connected)")
    clock_hz: int = Field(default=100_000, ge=10_000, le=400_000,
                          description="cp2112: the SMBus clock")
    address: int = Field(default=BATTERY_ADDRESS, ge=0x08, le=0x77,
                         description="the battery's 7-bit SMBus address")
    pec: bool = Field(default=True, description="read and check the packet error code of "
                                                "every transaction (and send it on writes)")
    retries: int = Field(default=3, ge=0, le=20, description="retries of a transaction after a "
                         "NACK, a bus error or a wrong PEC, before a device error")
    retry_delay_s: float = Field(default=0.002, ge=0, le=1,
                                 description="pause before each retry")
    cells: int | None = Field(default=None, ge=0, le=4, description="cell voltages to read; "
                              "unset: those the gauge answers at open")
    cell_commands: tuple[int, ...] = Field(
        default=TI_CELL_VOLTAGE_COMMANDS, min_length=1, max_length=4,
        description="the commands of CellVoltage1..4 (manufacturer-specific; TI's by default)")
    timeout_s: float = Field(default=1.0, gt=0, le=60,
                             description="seconds one read of every signal may take")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if isinstance(self.i2c_bus, int) and self.i2c_bus < 0:
            raise ValueError(f"i2c_bus {self.i2c_bus} must be 0 or more")
        if isinstance(self.i2c_bus, str) and not self.i2c_bus.startswith("/dev/"):
            raise ValueError(f"i2c_bus {self.i2c_bus!r} must be a number or a /dev/ path")
        bad = [c for c in self.cell_commands if not 0 <= c <= 0xFF]
        if bad:
            raise ValueError(f"cell_commands {bad} are not SMBus commands (0..255)")
        if self.cells is not None and self.cells > len(self.cell_commands):
            raise ValueError(f"cells {self.cells} needs as many cell_commands, "
                             f"not {len(self.cell_commands)}")
        return self

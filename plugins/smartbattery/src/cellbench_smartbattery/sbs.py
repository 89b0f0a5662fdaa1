"""The Smart Battery Data Specification 1.1 as this plugin uses it: command codes, the SMBus
packet error code (PEC) and the decoding of BatteryStatus, SpecificationInfo and ManufactureDate.

Shared by the driver and the register model, so that both speak the same registers.
"""

from __future__ import annotations

from typing import Final

# --- SBS 1.1 commands (SMBus command codes) ----------------------------------------------------
REMAINING_CAPACITY_ALARM: Final = 0x01
BATTERY_MODE: Final = 0x03
TEMPERATURE: Final = 0x08
VOLTAGE: Final = 0x09
CURRENT: Final = 0x0A
AVERAGE_CURRENT: Final = 0x0B
RELATIVE_STATE_OF_CHARGE: Final = 0x0D
REMAINING_CAPACITY: Final = 0x0F
FULL_CHARGE_CAPACITY: Final = 0x10
BATTERY_STATUS: Final = 0x16
CYCLE_COUNT: Final = 0x17
DESIGN_CAPACITY: Final = 0x18
DESIGN_VOLTAGE: Final = 0x19
SPECIFICATION_INFO: Final = 0x1A
MANUFACTURE_DATE: Final = 0x1B
SERIAL_NUMBER: Final = 0x1C
MANUFACTURER_NAME: Final = 0x20
DEVICE_NAME: Final = 0x21
DEVICE_CHEMISTRY: Final = 0x22

#: CellVoltage1..4 of TI gas gauges (bq20z, bq30z, bq40z): manufacturer commands in the range
#: SBS 1.1 leaves to OptionalMfgFunction4..1, numbered downwards (0x3F is cell 1).
TI_CELL_VOLTAGE_COMMANDS: Final = (0x3F, 0x3E, 0x3D, 0x3C)

#: The longest block an SBS block read may return (SMBus 2.0 block limit).
MAX_BLOCK: Final = 32

#: The default SMBus address of a smart battery (7-bit).
BATTERY_ADDRESS: Final = 0x0B

#: BatteryMode bit 15: capacities in 10 mWh (and power in 10 mW) instead of mAh (and mA).
CAPACITY_MODE_BIT: Final = 0x8000

#: BatteryStatus bits that become signals: (signal name, bit mask). The alarm bits (15..8) and
#: the status bits (7..4); bits 3..0 are the error code of the last command.
STATUS_BITS: Final = (
    ("alarm_over_charged", 0x8000),
    ("alarm_terminate_charge", 0x4000),
    ("alarm_over_temp", 0x1000),
    ("alarm_terminate_discharge", 0x0800),
    ("alarm_remaining_capacity", 0x0200),
    ("alarm_remaining_time", 0x0100),
    ("status_initialized", 0x0080),
    ("status_discharging", 0x0040),
    ("status_fully_charged", 0x0020),
    ("status_fully_discharged", 0x0010),
)
ERROR_CODE_MASK: Final = 0x000F



def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8_TABLE: Final = _crc8_table()


def pec(data: bytes) -> int:
    """The SMBus packet error code of ``data``: CRC-8, polynomial x^8 + x^2 + x + 1 (0x07),
    initial value 0, over every byte of the transaction including the address bytes."""
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def write_address(address: int) -> int:
    """The address byte of a write to the 7-bit ``address``."""
    return (address << 1) & 0xFE


def read_address(address: int) -> int:
    """The address byte of a read from the 7-bit ``address``."""
    return (address << 1) | 0x01


def signed16(word: int) -> int:
    """A 16-bit word as two's complement (Current and AverageCurrent are signed)."""
    return word - 0x10000 if word & 0x8000 else word


def scales(specification_info: int) -> tuple[int, int]:
    """The voltage and current/capacity multipliers (VScale, IPScale) of SpecificationInfo:
    10 to the power of bits 8..11 and 12..15. ValueError for the exponents the specification
    reserves (above 3)."""
    v_exponent = (specification_info >> 8) & 0x0F
    ip_exponent = (specification_info >> 12) & 0x0F
    if v_exponent > 3 or ip_exponent > 3:
        raise ValueError(f"SpecificationInfo 0x{specification_info:04X} has a reserved scale "
                         f"(VScale 10^{v_exponent}, IPScale 10^{ip_exponent}; at most 10^3)")
    return 10 ** v_exponent, 10 ** ip_exponent


def manufacture_date(word: int) -> str:
    """ManufactureDate as an ISO date: (year - 1980) * 512 + month * 32 + day."""
    year, month, day = 1980 + (word >> 9), (word >> 5) & 0x0F, word & 0x1F
    return f"{year:04d}-{month:02d}-{day:02d}"


def encode_date(year: int, month: int, day: int) -> int:
    """The ManufactureDate word of a date."""
    return ((year - 1980) << 9) | (month << 5) | day

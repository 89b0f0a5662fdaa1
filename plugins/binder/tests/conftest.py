"""Helpers of the binder tests: Modbus frames built by hand, and running a coroutine."""

from __future__ import annotations

import struct


def crc16(frame: bytes) -> bytes:
    """The Modbus RTU CRC of ``frame``, low byte first."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def rtu(*parts: int | bytes) -> bytes:
    """An RTU frame: unit, function and the body, then the CRC."""
    body = b"".join(p if isinstance(p, bytes) else bytes([p]) for p in parts)
    return body + crc16(body)


def words(*values: int) -> bytes:
    """Registers as Modbus sends them, big-endian."""
    return struct.pack(f">{len(values)}H", *values)

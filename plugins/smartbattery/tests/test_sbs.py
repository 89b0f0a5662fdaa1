"""The SBS helpers: PEC, scales and dates."""

import pytest

from cellbench_smartbattery import sbs


def test_pec_is_the_smbus_crc8() -> None:
    # The CRC-8 (poly 0x07, init 0) check value, and an SMBus Read Word of a TI gauge:
    # Voltage (0x09) at 0x0B answering 0x3A98 (15000 mV).
    assert sbs.pec(b"123456789") == 0xF4
    assert sbs.pec(b"") == 0
    frame = bytes([0x16, 0x09, 0x17, 0x98, 0x3A])
    assert sbs.pec(frame + bytes([sbs.pec(frame)])) == 0  # a frame with its PEC checks to 0


def test_scales_and_signs() -> None:
    assert sbs.scales(0x0031) == (1, 1)
    assert sbs.scales(0x2131) == (10, 100)
    with pytest.raises(ValueError, match=r"0xF031 has a reserved scale \(VScale 10\^0, "
                                         r"IPScale 10\^15"):
        sbs.scales(0xF031)
    assert sbs.signed16(0xFB50) == -1200
    assert sbs.signed16(0x04B0) == 1200


def test_manufacture_date_round_trip() -> None:
    assert sbs.manufacture_date(sbs.encode_date(2024, 3, 15)) == "2024-03-15"

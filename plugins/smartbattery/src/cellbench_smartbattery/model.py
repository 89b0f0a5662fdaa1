"""A register model of a smart battery (SBS 1.1 slave with PEC) and the buses that reach it
without hardware: :class:`ModelBus` (an SMBus whose only slave is the model) and
:class:`EmulatedCp2112` (a CP2112 bridge at its HID reports, with the model on its SMBus).

This is the plugin's emulator: the tests and ``bus = "emulated"`` in a station file use it. The
pack is a simple one: its charge follows the current set on it (positive charging) on the wall
clock, its cell voltages follow the charge, and :class:`Faults` makes the bus misbehave.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cellbench_smartbattery import cp2112, sbs
from cellbench_smartbattery.bus import BusError, BusNack, SmbusBus


@dataclass
class Faults:
    """How the model misbehaves; each count is used up one transaction at a time."""

    nacks: int = 0  # the next transactions are not acknowledged
    bus_errors: int = 0  # the next transactions fail on the bus (arbitration lost)
    bad_pec: int = 0  # the next replies carry a wrong PEC
    block_length: int | None = None  # every block read announces this many bytes
    absent: set[int] = field(default_factory=set)  # commands the gauge does not implement


class SbsBattery:
    """A smart battery's registers, answering SMBus transactions at ``address``.

    ``cells`` cell voltages are offered (TI CellVoltage commands), ``capacity_mode_wh`` selects
    10 mWh capacities, and ``clock`` (seconds) drives the charge.
    """

    def __init__(self, *, address: int = sbs.BATTERY_ADDRESS, cells: int = 4,
                 capacity_ah: float = 2.9, charge_ah: float = 2.0, current_a: float = -1.2,
                 temperature_c: float = 25.0, capacity_mode_wh: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address
        self.cells = cells
        self.capacity_ah = capacity_ah
        self.charge_ah = charge_ah
        self.current_a = current_a
        self.temperature_c = temperature_c
        self.cycle_count = 42
        self.status_alarms = 0
        self.remaining_capacity_alarm = 300  # mAh, or 10 mWh in capacity mode
        self.battery_mode = sbs.CAPACITY_MODE_BIT if capacity_mode_wh else 0
        self.specification_info = 0x0031  # SBS 1.1 with PEC, VScale and IPScale 1
        self.strings = {sbs.MANUFACTURER_NAME: b"cellbench", sbs.DEVICE_NAME: b"SBS-MODEL-4S",
                        sbs.DEVICE_CHEMISTRY: b"LION"}
        self.serial_number = 0x1234
        self.date = sbs.encode_date(2024, 3, 15)
        self.faults = Faults()
        #: The commands of the last transactions, in order (newest last).
        self.commands: deque[int] = deque(maxlen=1000)
        self._clock = clock
        self._since = clock()
        self._lock = threading.Lock()

    # -- the pack -----------------------------------------------------------------------------

    def _advance(self) -> None:
        now = self._clock()
        self.charge_ah = min(self.capacity_ah, max(
            0.0, self.charge_ah + self.current_a * (now - self._since) / 3600.0))
        self._since = now

    def soc(self) -> float:
        """State of charge, 0..1."""
        return self.charge_ah / self.capacity_ah

    def cell_voltage_v(self, cell: int) -> float:
        """Cell ``cell`` (0-based): an open-circuit curve with a small spread between cells."""
        return 3.0 + 1.2 * self.soc() - 0.002 * cell + 0.05 * self.current_a

    def words(self) -> dict[int, int]:
        """Every word register now, raw as the gauge reports it."""
        self._advance()
        wh = bool(self.battery_mode & sbs.CAPACITY_MODE_BIT)
        voltage = sum(self.cell_voltage_v(n) for n in range(max(self.cells, 1)))

        def capacity(ah: float) -> int:
            return round(ah * voltage * 100) if wh else round(ah * 1000)

        current = round(self.current_a * 1000) & 0xFFFF
        status = self.status_alarms | 0x0080 | (0x0040 if self.current_a < 0 else 0)
        if self.soc() >= 1.0:
            status |= 0x0020
        if self.soc() <= 0.0:
            status |= 0x0010
        words = {
            sbs.REMAINING_CAPACITY_ALARM: self.remaining_capacity_alarm,
            sbs.BATTERY_MODE: self.battery_mode,
            sbs.TEMPERATURE: round((self.temperature_c + 273.15) * 10),
            sbs.VOLTAGE: round(voltage * 1000),
            sbs.CURRENT: current,
            sbs.AVERAGE_CURRENT: current,
            sbs.RELATIVE_STATE_OF_CHARGE: round(self.soc() * 100),
            sbs.REMAINING_CAPACITY: capacity(self.charge_ah),
            sbs.FULL_CHARGE_CAPACITY: capacity(self.capacity_ah),
            sbs.BATTERY_STATUS: status,
            sbs.CYCLE_COUNT: self.cycle_count,
            sbs.DESIGN_CAPACITY: capacity(self.capacity_ah),
            sbs.DESIGN_VOLTAGE: 14400,
            sbs.SPECIFICATION_INFO: self.specification_info,
            sbs.MANUFACTURE_DATE: self.date,
            sbs.SERIAL_NUMBER: self.serial_number,
        }
        for n, command in enumerate(sbs.TI_CELL_VOLTAGE_COMMANDS[:self.cells]):
            words[command] = round(self.cell_voltage_v(n) * 1000)
        return words

    # -- the SMBus slave ----------------------------------------------------------------------

    def transaction(self, address: int, written: bytes, read_length: int) -> bytes:
        """One SMBus transaction: ``written`` (command, then data and PEC for a write), then,
        after a repeated start, ``read_length`` bytes read back (0: a plain write). Bytes read
        past the reply are the idle bus (0xFF)."""
        with self._lock:
            faults = self.faults
            if address != self.address or not written:
                raise BusNack(f"no slave at 0x{address:02X}")
            command = written[0]
            self.commands.append(command)
            if faults.nacks:
                faults.nacks -= 1
                raise BusNack("the gauge is busy")
            if faults.bus_errors:
                faults.bus_errors -= 1
                raise BusError("arbitration lost")
            if command in faults.absent:
                raise BusNack(f"command 0x{command:02X} not implemented")
            if read_length == 0:
                self._write(command, written[1:])
                return b""
            reply = self._reply(command)
            header = bytes([sbs.write_address(address), command, sbs.read_address(address)])
            check = sbs.pec(header + reply)
            if faults.bad_pec:
                faults.bad_pec -= 1
                check ^= 0x5A
            return (reply + bytes([check])).ljust(read_length, b"\xff")[:read_length]

    def _reply(self, command: int) -> bytes:
        if command in self.strings:
            data = self.strings[command]
            count = len(data) if self.faults.block_length is None else self.faults.block_length
            return bytes([count]) + data
        words = self.words()
        if command not in words:
            raise BusNack(f"command 0x{command:02X} not implemented")
        return struct.pack("<H", words[command])

    def _write(self, command: int, data: bytes) -> None:
        # A word write, with or without its PEC; a PEC is checked before the gauge acts on it.
        if len(data) not in (2, 3):
            raise BusNack(f"write 0x{command:02X}: {len(data)} bytes after the command")
        if len(data) == 3 and sbs.pec(
                bytes([sbs.write_address(self.address), command]) + data[:2]) != data[2]:
            raise BusNack(f"write 0x{command:02X}: wrong PEC")
        value = data[0] | (data[1] << 8)
        if command == sbs.REMAINING_CAPACITY_ALARM:
            self.remaining_capacity_alarm = value
        elif command == sbs.BATTERY_MODE:
            self.battery_mode = value
        else:
            raise BusNack(f"command 0x{command:02X} is read-only")


class ModelBus(SmbusBus):
    """An SMBus whose only slave is ``battery``."""

    def __init__(self, battery: SbsBattery, name: str = "emulated SMBus") -> None:
        self.battery = battery
        self.name = name

    def open(self) -> None:
        pass  # nothing to reach: the model is in this process

    def write_read(self, address: int, command: int, length: int) -> bytes:
        return self.battery.transaction(address, bytes([command]), length)

    def write(self, address: int, data: bytes) -> None:
        self.battery.transaction(address, data, 0)

    def close(self) -> None:
        pass


class EmulatedCp2112:
    """A CP2112 bridge at its HID reports (AN495), with ``battery`` on its SMBus: what
    :class:`~cellbench_smartbattery.cp2112.Cp2112Bus` talks to in place of a USB device."""

    def __init__(self, battery: SbsBattery) -> None:
        self.battery = battery
        self.configuration = b""
        self.closed = False
        self._status = bytes([cp2112.STATUS_IDLE, 0])
        self._data = b""
        self._out: deque[bytes] = deque()

    def send_feature_report(self, report: bytes) -> None:
        if report[0] == cp2112.SMBUS_CONFIGURATION:
            self.configuration = bytes(report)

    def write(self, report: bytes) -> None:
        if len(report) != cp2112.REPORT_LENGTH:
            raise ValueError(f"an interrupt report is {cp2112.REPORT_LENGTH} bytes, not "
                             f"{len(report)}")
        kind = report[0]
        if kind == cp2112.DATA_WRITE_READ_REQUEST:
            address, length = report[1] >> 1, struct.unpack(">H", report[2:4])[0]
            written = report[5:5 + report[4]]
            self._run(lambda: self.battery.transaction(address, written, length))
        elif kind == cp2112.DATA_WRITE:
            address, data = report[1] >> 1, report[3:3 + report[2]]
            self._run(lambda: self.battery.transaction(address, data, 0))
        elif kind == cp2112.TRANSFER_STATUS_REQUEST:
            self._out.append(bytes([cp2112.TRANSFER_STATUS_RESPONSE, *self._status, 0, 0,
                                    0, len(self._data)]).ljust(cp2112.REPORT_LENGTH, b"\0"))
        elif kind == cp2112.DATA_READ_FORCE_SEND:
            wanted = struct.unpack(">H", report[1:3])[0]
            data, self._data = self._data[:wanted], self._data[wanted:]
            for start in range(0, len(data), cp2112.REPORT_DATA):
                chunk = data[start:start + cp2112.REPORT_DATA]
                self._out.append(bytes([cp2112.DATA_READ_RESPONSE, cp2112.STATUS_COMPLETE,
                                        len(chunk)]) + chunk.ljust(cp2112.REPORT_DATA, b"\0"))
        elif kind == cp2112.CANCEL_TRANSFER:
            self._status, self._data = bytes([cp2112.STATUS_IDLE, 0]), b""

    def _run(self, transaction: Callable[[], bytes]) -> None:
        try:
            self._data = transaction()
            self._status = bytes([cp2112.STATUS_COMPLETE, 5])
        except BusNack:
            self._data = b""
            self._status = bytes([cp2112.STATUS_ERROR, cp2112.ERROR_ADDRESS_NACKED])
        except BusError:
            self._data = b""
            self._status = bytes([cp2112.STATUS_ERROR, cp2112.ERROR_ARBITRATION_LOST])

    def read(self, timeout_s: float) -> bytes:
        return self._out.popleft() if self._out else b""

    def close(self) -> None:
        self.closed = True

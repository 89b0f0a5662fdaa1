"""A smart battery (Smart Battery Data Specification 1.1) on an SMBus, as an OSI device.

Every ``read()`` is one call on the device's worker thread that reads each register in turn
(SMBus Read Word, PEC checked, retried a bounded number of times). The identity strings are
block reads made once at ``open()`` and offered as :attr:`SmartBattery.info`, which the station
records with each test. Protocol, settings and failure behaviour: docs/smartbattery.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cellbench_sdk import (
    BadReply,
    Clock,
    DeviceConnectionError,
    DeviceError,
    DeviceWorker,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
    WhileOpen,
)
from cellbench_smartbattery import sbs
from cellbench_smartbattery.bus import SbsClient, Smbus2Bus, SmbusBus
from cellbench_smartbattery.settings import SmartBatterySettings

#: The writable signal: RemainingCapacityAlarm, in the capacity unit.
ALARM_SIGNAL = "remaining_capacity_alarm"


@dataclass(frozen=True)
class _Scale:
    """How raw words become SI values, learnt from the gauge at open."""

    volts: float  # per raw voltage count
    amps: float  # per raw current count
    capacity: float  # Ah (or Wh) per raw capacity count
    capacity_unit: str  # "Ah" or "Wh"


def make_bus(settings: SmartBatterySettings) -> SmbusBus:
    """The adapter the settings name (not yet opened)."""
    if settings.bus == "smbus2":
        return Smbus2Bus(settings.i2c_bus)
    if settings.bus == "cp2112":
        from cellbench_smartbattery.cp2112 import Cp2112Bus, PyUsbHid

        # The bridge's own timeout is per transaction; timeout_s bounds a whole read.
        return Cp2112Bus(lambda: PyUsbHid.find(settings.cp2112_serial),
                         name=f"CP2112 {settings.cp2112_serial or ''}".strip(),
                         clock_hz=settings.clock_hz, timeout_s=min(settings.timeout_s, 0.1))
    from cellbench_smartbattery.model import ModelBus, SbsBattery

    return ModelBus(SbsBattery(address=settings.address))


class SmartBattery(OsiDevice):
    """One smart battery at ``settings.address`` on the bus the settings name (or on ``bus``)."""

    virtual_time_ok = False

    def __init__(self, settings: SmartBatterySettings, bus: SmbusBus | None = None) -> None:
        self.settings = settings
        self.bus = bus if bus is not None else make_bus(settings)
        self.name = f"smartbattery@{self.bus.name}:0x{settings.address:02X}"
        self.client = SbsClient(self.bus, settings.address, device=self.name,
                                use_pec=settings.pec, retries=settings.retries,
                                retry_delay_s=settings.retry_delay_s)
        self._clock = WhileOpen[Clock](self)
        self._worker: DeviceWorker | None = None
        self._cells = (settings.cells if settings.cells is not None
                       else len(settings.cell_commands))
        self._scale = _Scale(0.001, 0.001, 0.001, "Ah")
        self._info: dict[str, str] = {}
        self._lost = False  # the adapter went away while open: read() reaches it again

    @property
    def signals(self) -> Sequence[SignalInfo]:
        """The signals; the cells and the capacity unit are those the gauge reported at open
        (before it, every cell the settings allow, in Ah)."""
        unit = self._scale.capacity_unit
        return [
            SignalInfo("voltage", "V", description="pack voltage (Voltage)"),
            SignalInfo("current", "A", description="current, positive charging (Current)"),
            SignalInfo("average_current", "A", description="one-minute average current "
                                                           "(AverageCurrent)"),
            SignalInfo("temperature", "°C", description="pack temperature (Temperature)"),
            SignalInfo("relative_soc", "%", description="RelativeStateOfCharge"),
            SignalInfo("remaining_capacity", unit, description="RemainingCapacity"),
            SignalInfo("full_charge_capacity", unit, description="FullChargeCapacity"),
            SignalInfo("cycle_count", "", description="CycleCount"),
            *(SignalInfo(name, "", description=f"BatteryStatus bit 0x{mask:04X}: 1 when set")
              for name, mask in sbs.STATUS_BITS),
            SignalInfo("status_error_code", "", description="BatteryStatus bits 3..0: the "
                                                            "gauge's error code"),
            *(SignalInfo(f"cell{n + 1}_voltage", "V", description=f"CellVoltage{n + 1}")
              for n in range(self._cells)),
            SignalInfo(ALARM_SIGNAL, unit, writable=True,
                       description="RemainingCapacityAlarm: the gauge alarms below it"),
        ]

    @property
    def info(self) -> Mapping[str, str]:
        """ManufacturerName, DeviceName, DeviceChemistry, SerialNumber and the design data,
        read at open."""
        return dict(self._info)

    async def open(self, clock: Clock) -> None:
        worker = DeviceWorker(self.name, self.settings.timeout_s)
        try:
            await worker.run(self._connect, self.settings.timeout_s * 4, "open")
        except BaseException:
            await self._release(worker)
            raise
        self._worker = worker
        self._lost = False
        self._clock.set(clock)

    def _connect(self) -> None:
        """On the worker: reach the bus, learn the gauge's scales and cells, read its
        identity."""
        self.bus.open()
        client = self.client
        specification = client.read_word(sbs.SPECIFICATION_INFO)
        mode = client.read_word(sbs.BATTERY_MODE)
        try:
            volts, amps = sbs.scales(specification)
        except ValueError as err:
            raise BadReply(self.name, str(err)) from None
        if mode & sbs.CAPACITY_MODE_BIT:
            self._scale = _Scale(0.001 * volts, 0.001 * amps, 0.01 * volts * amps, "Wh")
        else:
            self._scale = _Scale(0.001 * volts, 0.001 * amps, 0.001 * amps, "Ah")
        if self.settings.cells is None:
            self._cells = self._probe_cells()
        scale = self._scale
        design_capacity = client.read_word(sbs.DESIGN_CAPACITY) * scale.capacity
        design_voltage = client.read_word(sbs.DESIGN_VOLTAGE) * scale.volts
        info = {"manufacturer": self._text(sbs.MANUFACTURER_NAME),
                "device_name": self._text(sbs.DEVICE_NAME),
                "chemistry": self._text(sbs.DEVICE_CHEMISTRY),
                "serial_number": str(client.read_word(sbs.SERIAL_NUMBER)),
                "manufacture_date": sbs.manufacture_date(client.read_word(sbs.MANUFACTURE_DATE)),
                "design_capacity": f"{design_capacity:g} {scale.capacity_unit}",
                "design_voltage": f"{design_voltage:g} V",
                "specification_info": f"0x{specification:04X}"}
        self._info = info

    def _probe_cells(self) -> int:
        """The leading cell-voltage commands the gauge answers (one try each: a gauge without
        the command does not acknowledge it)."""
        for n, command in enumerate(self.settings.cell_commands):
            try:
                self.client.read_word(command, retries=0)
            except DeviceError:
                return n
        return len(self.settings.cell_commands)

    def _text(self, command: int) -> str:
        """A block read as text: printable ASCII, trailing NULs and spaces dropped."""
        data = self.client.read_block(command).rstrip(b"\x00 ")
        if not all(0x20 <= byte < 0x7F for byte in data):
            raise BadReply(self.name, f"block 0x{command:02X} is not printable ASCII: "
                                      f"{data!r}")
        return data.decode("ascii")

    async def close(self) -> None:
        self._clock.clear()
        worker, self._worker = self._worker, None
        await self._release(worker)

    async def _release(self, worker: DeviceWorker | None) -> None:
        if worker is None:
            self.bus.close()
            return
        try:
            await worker.run(self.bus.close, self.settings.timeout_s, "close")
        except DeviceError:
            pass  # a hung bus: the worker thread finishes the close when it can
        finally:
            worker.close()

    def _worker_or_closed(self) -> DeviceWorker:
        self._clock.get()  # refused unless open
        assert self._worker is not None
        return self._worker

    async def read(self) -> Mapping[str, Reading]:
        """Every signal. After the adapter was lost (a USB bridge unplugged), the next read
        reaches it again first (and reads the gauge's identity anew), or raises why it
        cannot."""
        worker = self._worker_or_closed()
        try:
            values = await worker.call(self._reconnecting_read)
        except DeviceConnectionError:
            self._lost = True
            raise
        now = self._clock.get().now()
        return {name: Reading(value, now) for name, value in values.items()}

    def _reconnecting_read(self) -> dict[str, float]:
        if self._lost:
            self.bus.close()
            self._connect()
            self._lost = False
        return self._read_all()

    def _read_all(self) -> dict[str, float]:
        """On the worker: every signal, in SI units."""
        read, scale = self.client.read_word, self._scale
        rsoc = read(sbs.RELATIVE_STATE_OF_CHARGE)
        if rsoc > 100:
            raise BadReply(self.name, f"RelativeStateOfCharge {rsoc} % is above 100 %")
        status = read(sbs.BATTERY_STATUS)
        values = {
            "voltage": read(sbs.VOLTAGE) * scale.volts,
            "current": sbs.signed16(read(sbs.CURRENT)) * scale.amps,
            "average_current": sbs.signed16(read(sbs.AVERAGE_CURRENT)) * scale.amps,
            # 0.1 K steps; rounded so that 298.2 K reads 25.05 °C, not 25.049999999999955.
            "temperature": round(read(sbs.TEMPERATURE) * 0.1 - 273.15, 2),
            "relative_soc": float(rsoc),
            "remaining_capacity": read(sbs.REMAINING_CAPACITY) * scale.capacity,
            "full_charge_capacity": read(sbs.FULL_CHARGE_CAPACITY) * scale.capacity,
            "cycle_count": float(read(sbs.CYCLE_COUNT)),
            **{name: float(bool(status & mask)) for name, mask in sbs.STATUS_BITS},
            "status_error_code": float(status & sbs.ERROR_CODE_MASK),
            **{f"cell{n + 1}_voltage": read(command) * scale.volts
               for n, command in enumerate(self.settings.cell_commands[:self._cells])},
            ALARM_SIGNAL: read(sbs.REMAINING_CAPACITY_ALARM) * scale.capacity,
        }
        return values

    async def write(self, signal: str, value: float) -> None:
        worker = self._worker_or_closed()
        if signal not in {info.name for info in self.signals}:
            raise OutOfRange(self.name, f"no signal {signal!r}")
        if signal != ALARM_SIGNAL:
            raise NotSupported(self.name, f"{signal} is read-only")
        raw = value / self._scale.capacity if math.isfinite(value) else math.nan
        if not (math.isfinite(raw) and 0 <= round(raw) <= 0xFFFF):
            limit = 0xFFFF * self._scale.capacity
            raise OutOfRange(self.name, f"{signal}: {value} {self._scale.capacity_unit} is "
                                        f"outside 0..{limit:g}")
        await worker.call(self.client.write_word, sbs.REMAINING_CAPACITY_ALARM, round(raw))


def smart_battery(settings: SmartBatterySettings) -> SmartBattery:
    """The factory the plugin registers."""
    return SmartBattery(settings)

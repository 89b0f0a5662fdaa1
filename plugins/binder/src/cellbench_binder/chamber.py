"""Binder MB1/MB2 climate chambers over Modbus (TCP, RTU over TCP, RTU on a serial line).

The driver uses pymodbus's async client on the station's event loop. Every request has a
timeout; what went wrong decides the typed error: no answer (DeviceTimeout), bytes that make no
valid frame (BadReply), a dropped connection (DeviceConnectionError), a Modbus exception
(DeviceError naming the register and the exception). After anything but a Modbus exception the
connection is closed and the next request opens a fresh one, so a late reply is never taken for
the answer to a later request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from cellbench_binder.registers import (
    MAPS,
    Mode,
    RegisterMap,
    decode_mode,
    encode_mode,
    float_to_words,
    words_to_float,
)
from cellbench_binder.settings import BinderSettings
from cellbench_sdk import (
    BadReply,
    ChamberState,
    ClimateChamber,
    Clock,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    OutOfRange,
    WhileOpen,
)

#: Modbus exception codes, as the errors name them.
EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
}


class ChamberFault(DeviceError):
    """The chamber reports a state in which it cannot hold its climate: door open, alarm."""


@dataclass(frozen=True)
class BinderStatus:
    """Everything one poll of a Binder controller reads."""

    state: ChamberState
    mode: Mode
    door_open: bool
    alarm: int  # 0: no alarm, else the controller's alarm code


def create_chamber(settings: BinderSettings) -> BinderChamber:
    """The chamber ``settings`` describe, with humidity control or without."""
    return BinderHumidityChamber(settings) if settings.has_humidity else BinderChamber(settings)


class _Link:
    """One pymodbus client and the bookkeeping that names what went wrong with a request."""

    def __init__(self, name: str, settings: BinderSettings) -> None:
        self.name = name
        self.timeout_s = settings.timeout_s
        self.unit = settings.unit
        self._received = bytearray()
        self._lost = asyncio.Event()
        self._one_at_a_time = asyncio.Lock()  # the bookkeeping below is per request
        client_timeout = settings.timeout_s + 1.0  # ours fires first; the client's is a backstop
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if settings.framing == "rtu":
            assert settings.port is not None  # the settings validator requires it
            self._client = AsyncModbusSerialClient(
                settings.port,
                framer=FramerType.RTU,
                baudrate=settings.baudrate,
                timeout=client_timeout,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace_packet,
                trace_connect=self._trace_connect,
            )
        else:
            host, port = settings.host_port()
            self._client = AsyncModbusTcpClient(
                host,
                port=port,
                framer=FramerType.SOCKET if settings.framing == "modbus-tcp" else FramerType.RTU,
                timeout=client_timeout,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace_packet,
                trace_connect=self._trace_connect,
            )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received += data
        return data

    def _trace_connect(self, connected: bool) -> None:
        if not connected:
            self._lost.set()

    async def connect(self) -> None:
        try:
            ok = await asyncio.wait_for(self._client.connect(), self.timeout_s)
        except TimeoutError:
            ok = False
        if not ok or not self._client.connected:
            self._client.close()
            raise DeviceConnectionError(self.name, "cannot connect to the controller")
        self._lost.clear()

    def close(self) -> None:
        self._client.close()

    async def request(self, what: str, call: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """Send one request; its reply, or the typed error that says what happened."""
        async with self._one_at_a_time:
            return await self._request(what, call)

    async def _request(self, what: str, call: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        if not self._client.connected:
            await self.connect()
        self._received.clear()
        self._lost.clear()
        task = asyncio.ensure_future(call())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ModbusException):
                    await task
        if task in done and task.exception() is None:
            reply = task.result()
            if reply.isError():
                code = getattr(reply, "exception_code", 0)
                raise DeviceError(
                    self.name,
                    f"{what} answered Modbus exception {code} "
                    f"({EXCEPTIONS.get(code, 'unknown exception')})",
                )
            return reply
        received = bytes(self._received)
        self.close()  # a late or partial reply must not answer the next request
        if self._lost.is_set():
            raise DeviceConnectionError(
                self.name, f"connection dropped during {what} ({len(received)} bytes received)"
            )
        if received:
            raise BadReply(
                self.name, f"garbled reply to {what} (bad CRC or framing): {received.hex(' ')}"
            )
        raise DeviceTimeout(self.name, f"no answer to {what} within {self.timeout_s:g} s")

    async def read_words(self, address: int, count: int, what: str) -> list[int]:
        reply = await self.request(
            what,
            lambda: self._client.read_holding_registers(
                address, count=count, device_id=self.unit
            ),
        )
        words = list(reply.registers)
        if len(words) != count:
            raise BadReply(self.name, f"{what} answered {len(words)} registers, not {count}")
        return words

    async def write_words(self, address: int, words: list[int], what: str) -> None:
        await self.request(
            what, lambda: self._client.write_registers(address, words, device_id=self.unit)
        )

    async def write_word(self, address: int, word: int, what: str) -> None:
        await self.request(
            what, lambda: self._client.write_register(address, word, device_id=self.unit)
        )


class BinderChamber(ClimateChamber):
    """One Binder chamber with an MB1 or MB2 controller, without humidity control.

    ``start()`` puts the controller in manual mode (it holds the manual setpoints), ``stop()``
    in its idle (basic) state. ``close()`` releases the connection and leaves the chamber as it
    is: a chamber keeps its cells at temperature when the station stops.
    """

    virtual_time_ok = False

    def __init__(self, settings: BinderSettings) -> None:
        self.settings = settings
        where = settings.port if settings.framing == "rtu" else settings.address
        self.name = f"binder {settings.controller}@{where}/{settings.unit}"
        self.registers: RegisterMap = MAPS[settings.controller]
        self._open = WhileOpen[tuple[_Link, Clock]](self)

    async def open(self, clock: Clock) -> None:
        link = _Link(self.name, self.settings)
        try:
            await link.connect()
            await self._mode_word(link)  # the controller answers, and with this map
        except BaseException:
            link.close()
            raise
        self._open.set((link, clock))

    async def close(self) -> None:
        if self._open.is_open:
            link, _ = self._open.get()
            link.close()
        self._open.clear()

    async def set_temperature(self, celsius: float) -> None:
        link, _ = self._open.get()
        s = self.settings
        if not (math.isfinite(celsius) and s.temperature_min_c <= celsius <= s.temperature_max_c):
            raise OutOfRange(
                self.name,
                f"temperature setpoint {celsius!r} °C is outside "
                f"{s.temperature_min_c:g}..{s.temperature_max_c:g} °C",
            )
        await self._write_float(link, self.registers.write_temperature, celsius, "°C")

    async def start(self) -> None:
        await self._set_running(True)

    async def stop(self) -> None:
        await self._set_running(False)

    async def read(self) -> ChamberState:
        """The chamber's state; a door open or an alarm raises ChamberFault."""
        status = await self.status()
        if status.alarm:
            where = f"register 0x{self.registers.alarm:04X}"
            raise ChamberFault(self.name, f"alarm {status.alarm} ({where})")
        if status.door_open:
            raise ChamberFault(self.name, "door open")
        return status.state

    async def status(self) -> BinderStatus:
        """Everything the controller reports, door and alarm included, without raising for them."""
        link, clock = self._open.get()
        r = self.registers
        temperature = await self._read_float(link, r.temperature)
        setpoint = await self._read_float(link, r.setpoint_temperature)
        humidity = setpoint_humidity = None
        if self.has_humidity:
            humidity = await self._read_float(link, r.humidity)
            setpoint_humidity = await self._read_float(link, r.setpoint_humidity)
        mode = decode_mode(r.family, await self._mode_word(link))
        door = await self._read_word(link, r.door)
        alarm = await self._read_word(link, r.alarm)
        state = ChamberState(
            time_s=clock.now(),
            temperature_c=temperature,
            setpoint_c=setpoint,
            running=mode is not Mode.IDLE,
            humidity_pct=humidity,
            setpoint_humidity_pct=setpoint_humidity,
        )
        return BinderStatus(state=state, mode=mode, door_open=door != 0, alarm=alarm)

    async def _set_running(self, running: bool) -> None:
        link, _ = self._open.get()
        r = self.registers
        current = await self._mode_word(link) if r.family == "MB2" else 0
        word = encode_mode(r.family, running, current)
        await link.write_word(r.mode_write, word, self._what("write of", r.mode_write))

    async def _mode_word(self, link: _Link) -> int:
        return await self._read_word(link, self.registers.mode)

    async def _read_word(self, link: _Link, address: int) -> int:
        (word,) = await link.read_words(address, 1, self._what("read of", address))
        return word

    async def _read_float(self, link: _Link, address: int) -> float:
        return words_to_float(await link.read_words(address, 2, self._what("read of", address)))

    async def _write_float(self, link: _Link, address: int, value: float, unit: str) -> None:
        what = f"{self._what('write of', address)} = {value:g} {unit}"
        await link.write_words(address, float_to_words(value), what)

    def _what(self, verb: str, address: int) -> str:
        return f"{verb} register 0x{address:04X} ({self.registers.name_of(address)})"


class BinderHumidityChamber(BinderChamber):
    """A Binder chamber that controls relative humidity as well as temperature."""

    has_humidity = True

    async def set_humidity(self, percent: float) -> None:
        link, _ = self._open.get()
        if not (math.isfinite(percent) and 0.0 <= percent <= 100.0):
            raise OutOfRange(self.name, f"humidity setpoint {percent!r} % is outside 0..100 %")
        await self._write_float(link, self.registers.write_humidity, percent, "%")

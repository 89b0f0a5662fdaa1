"""An emulator of a Binder MB1/MB2 controller: a pymodbus server holding the register map, a
first-order thermal model behind it, and a fault-injecting front door.

The pymodbus server listens on a private loopback port; clients connect to the emulator's port,
where a small relay passes their requests on and the server's replies back, unless a fault says
otherwise (slow, garbled, silent, dropped mid-reply). Faults of the controller itself (a refused
setpoint, door open, alarm) live in the register model; a register the map lacks answers Modbus
exception 2 (illegal data address), as a real controller does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.server import ModbusTcpServer

from cellbench_binder.registers import (
    MAPS,
    RegisterMap,
    decode_mode,
    encode_mode,
    float_to_words,
    words_to_float,
)
from cellbench_sdk.emulation import ModelTime, approach

EmulatedFraming = Literal["modbus-tcp", "rtu-over-tcp"]


@dataclass
class Faults:
    """What the emulator does wrong; change the fields at any time."""

    slow_s: float = 0.0
    """Delay every reply by this many seconds (wall clock)."""
    garble: bool = False
    """Corrupt every reply after its first two bytes (a CRC error for RTU framing)."""
    silent: bool = False
    """Swallow every reply: requests go unanswered."""
    drop: bool = False
    """Send half of the next reply, then close the connection."""
    refuse_setpoints: bool = False
    """Answer every setpoint write with Modbus exception 3 (illegal data value)."""
    door_open: bool = False
    """The door is open: the door register reads 1 and the chamber drifts to ambient."""
    alarm: int = 0
    """An alarm code (0: none); while set the chamber stops conditioning."""


@dataclass
class BinderModel:
    """The register map of one controller and the climate behind it."""

    family: str = "MB1"
    ambient_c: float = 25.0
    ambient_humidity_pct: float = 40.0
    time_constant_s: float = 300.0
    humidity_time_constant_s: float = 120.0
    max_ramp_k_per_min: float = 3.0
    temperature_min_c: float = -40.0
    temperature_max_c: float = 180.0
    speed: float = 1.0
    """Model seconds per wall-clock second."""
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.registers: RegisterMap = MAPS[self.family]
        self.temperature_c = self.ambient_c
        self.humidity_pct = self.ambient_humidity_pct
        self.setpoint_c = self.ambient_c
        self.setpoint_humidity_pct = self.ambient_humidity_pct
        self.mode_word = encode_mode(self.family, False, 0)
        self._time = ModelTime(self.speed, self.clock)

    @property
    def conditioning(self) -> bool:
        """Whether the controller drives the climate to its setpoints."""
        running = decode_mode(self.family, self.mode_word).value != "idle"
        return running and not self.faults.door_open and not self.faults.alarm

    def advance(self) -> None:
        """Bring temperature and humidity to the present."""
        dt = self._time.elapsed()
        on = self.conditioning
        target = self.setpoint_c if on else self.ambient_c
        self.temperature_c = approach(
            self.temperature_c, target, dt, self.time_constant_s, self.max_ramp_k_per_min / 60
        )
        target_rh = self.setpoint_humidity_pct if on else self.ambient_humidity_pct
        self.humidity_pct = approach(
            self.humidity_pct, target_rh, dt, self.humidity_time_constant_s
        )

    def _floats(self) -> dict[int, float]:
        r = self.registers
        return {
            r.temperature: self.temperature_c,
            r.humidity: self.humidity_pct,
            r.setpoint_temperature: self.setpoint_c,
            r.setpoint_humidity: self.setpoint_humidity_pct,
            r.write_temperature: self.setpoint_c,
            r.write_humidity: self.setpoint_humidity_pct,
        }

    def _words(self) -> dict[int, int]:
        r = self.registers
        return {
            r.mode: self.mode_word,
            r.mode_write: self.mode_word,
            r.door: int(self.faults.door_open),
            r.alarm: self.faults.alarm,
        }

    def read(self, address: int, count: int) -> list[int] | ExcCodes:
        """The registers from ``address`` on: one float or one word, as the map holds them."""
        self.advance()
        floats, words = self._floats(), self._words()
        if address in floats and count == 2:
            return float_to_words(floats[address])
        if address in words and count == 1:
            return [words[address]]
        return ExcCodes.ILLEGAL_ADDRESS

    def write(self, address: int, values: Sequence[int]) -> ExcCodes | None:
        """Write a setpoint (a float) or the mode word."""
        self.advance()
        r = self.registers
        if address == r.mode_write and len(values) == 1:
            self.mode_word = values[0]
            return None
        if address not in (r.write_temperature, r.write_humidity) or len(values) != 2:
            return ExcCodes.ILLEGAL_ADDRESS
        value = words_to_float(list(values))
        low, high = (
            (self.temperature_min_c, self.temperature_max_c)
            if address == r.write_temperature
            else (0.0, 100.0)
        )
        if self.faults.refuse_setpoints or not (math.isfinite(value) and low <= value <= high):
            return ExcCodes.ILLEGAL_VALUE
        if address == r.write_temperature:
            self.setpoint_c = value
        else:
            self.setpoint_humidity_pct = value
        return None


class _Context(ModbusServerContext):
    """The pymodbus server's datastore: every request goes to the model."""

    def __init__(self, model: BinderModel) -> None:
        # Not the base's __init__: that builds pymodbus's own datastore, which the model replaces.
        self.model = model
        self.old_simulator = True
        self.simdevices = []

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if func_code not in (3, 6):  # read holding registers; the echo of a single write
            return ExcCodes.ILLEGAL_FUNCTION
        return self.model.read(address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        if func_code not in (6, 16):  # write single / multiple registers; no coils
            return ExcCodes.ILLEGAL_FUNCTION
        return self.model.write(address, [int(v) for v in values])

    def device_ids(self) -> list[int]:
        return [1]


class BinderEmulator:
    """A Binder controller on loopback; use ``async with`` or ``start()``/``stop()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        framing: EmulatedFraming = "rtu-over-tcp",
        model: BinderModel | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.framing = framing
        self.model = model or BinderModel()
        self._server: ModbusTcpServer | None = None
        self._relay: asyncio.Server | None = None
        self._backend_port = 0
        self._links: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def faults(self) -> Faults:
        """The faults to inject; change them at any time."""
        return self.model.faults

    async def start(self) -> None:
        framer = FramerType.SOCKET if self.framing == "modbus-tcp" else FramerType.RTU
        self._server = ModbusTcpServer(
            _Context(self.model), framer=framer, address=("127.0.0.1", 0)
        )
        await self._server.serve_forever(background=True)
        listener = self._server.transport
        assert isinstance(listener, asyncio.Server)
        self._backend_port = listener.sockets[0].getsockname()[1]
        self._relay = await asyncio.start_server(self._serve_client, self.host, self.port)
        self.port = self._relay.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.close()
            self.drop_connections()  # the relay's handlers see the end of input and finish
            if self._handlers:
                await asyncio.wait(self._handlers)
            await self._relay.wait_closed()
            self._relay = None
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def __aenter__(self) -> BinderEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def drop_connections(self) -> None:
        """Close every client connection now."""
        for writer in list(self._links):
            writer.close()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._links.add(writer)
        try:
            b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self._backend_port)
        except OSError:
            self._links.discard(writer)
            self._handlers.discard(handler)
            writer.close()
            return
        self._links.add(b_writer)
        upstream = asyncio.create_task(self._pass_requests(reader, b_writer))
        try:
            await self._pass_replies(b_reader, writer)
        finally:
            upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upstream
            for w in (writer, b_writer):
                self._links.discard(w)
                w.close()
            self._handlers.discard(handler)

    @staticmethod
    async def _pass_requests(reader: asyncio.StreamReader, backend: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                backend.write(data)
                await backend.drain()
        backend.close()

    def _garbled(self, data: bytes) -> bytes:
        """The reply with its CRC (RTU) or its protocol id (Modbus TCP) corrupted."""
        if self.framing == "rtu-over-tcp":
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data[:2] + bytes([data[2] ^ 0xFF]) + data[3:]

    async def _pass_replies(
        self, backend: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await backend.read(4096):
                f = self.faults
                if f.slow_s > 0:
                    await asyncio.sleep(f.slow_s)
                if f.silent:
                    continue
                if f.drop:
                    f.drop = False
                    writer.write(data[: len(data) // 2])
                    await writer.drain()
                    return
                if f.garble:
                    data = self._garbled(data)
                writer.write(data)
                await writer.drain()


async def serve(
    host: str = "127.0.0.1",
    port: int = 10001,
    *,
    framing: EmulatedFraming = "rtu-over-tcp",
    ready: Callable[[BinderEmulator], None] | None = None,
    **options: Any,
) -> None:
    """Serve one emulated controller until cancelled.

    ``options`` are fields of :class:`BinderModel` (``family``, ``speed``, ``time_constant_s``,
    ...); ``ready`` is called with the running emulator (its port, its faults).
    """
    async with BinderEmulator(host, port, framing=framing, model=BinderModel(**options)) as emu:
        if ready is not None:
            ready(emu)
        await asyncio.Event().wait()

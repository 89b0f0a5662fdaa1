"""Emulators of a CAN device's peers: a BMS node sending a database's frames from a simulated
battery pack, and an SLCAN (Lawicel) USB-CAN adapter on a pseudo-terminal.

:class:`BmsNode` sends, at their cycle times, the messages of a database that its node sends
(``BO_ ... BMS`` in a DBC), one frame per multiplexer value for multiplexed ones, with values
from a :class:`Pack` of cells: pack voltage and current, state of charge, cell voltages and
temperatures, by the signal names of the bundled ``bms.dbc``; every other signal sends its
override (:attr:`BmsNode.overrides`) or its initial value. It decodes what the station sends:
with ``STATION_ChargeControl`` (charge enable, contactor request, current limit) and a fresh
``STATION_Heartbeat`` it closes its contactor and charges the pack. It can be told to fall
silent (all messages or some) and to send frames of the wrong length.

:class:`SlcanAdapter` is the serial side of an SLCAN adapter on a pty pair: python-can's
``slcan`` interface opens the pty's path as it opens ``/dev/ttyACM0``, and the adapter's CAN
side is a python-can bus of this process (a virtual one that the node shares), so the node can
run in another process than the station.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import select
import threading
import time
import tty
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import cast

import can
from cantools.database import Database, Message

from cellbench_sdk.emulation import ModelTime, approach

log = logging.getLogger(__name__)

#: The example database shipped with the plugin, which the node's pack fills in by name.
BMS_DBC = Path(str(files("cellbench_can") / "data" / "bms.dbc"))
#: How long the station's heartbeat may stay away before the node opens its contactor (s).
HEARTBEAT_TIMEOUT_S = 0.5
#: Open-circuit voltage over state of charge of the emulated cells (an NMC-like curve).
_OCV = ((0.0, 3.0), (0.1, 3.45), (0.2, 3.55), (0.5, 3.7), (0.8, 3.95), (1.0, 4.2))


def _ocv(soc: float) -> float:
    for (s0, v0), (s1, v1) in itertools.pairwise(_OCV):
        if soc <= s1:
            return v0 + (v1 - v0) * (max(soc, s0) - s0) / (s1 - s0)
    return _OCV[-1][1]


@dataclass
class Pack:
    """Cells in series: each with its state of charge, a resistance and a temperature that
    approaches the ambient plus the rise its I²R heat causes (through a thermal resistance, with
    a time constant). Current is positive when charging."""

    cells: int = 6
    capacity_ah: float = 2.5
    soc: float = 0.5
    resistance_ohm: float = 0.02
    ambient_c: float = 25.0
    current_a: float = 0.0
    kelvin_per_watt: float = 10.0  # a cell's thermal resistance to the ambient
    time_constant_s: float = 600.0  # how fast its temperature follows
    spread: float = 0.01  # cell n starts at soc + n * spread / cells: min and max differ
    socs: list[float] = field(default_factory=list)
    temps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.socs = [min(1.0, self.soc + n * self.spread / self.cells)
                     for n in range(self.cells)]
        self.temps = [self.ambient_c] * self.cells

    def advance(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds pass at :attr:`current_a`."""
        step = self.current_a * dt_s / 3600 / self.capacity_ah
        self.socs = [min(1.0, max(0.0, soc + step)) for soc in self.socs]
        heat_w = self.current_a ** 2 * self.resistance_ohm
        # The cells further along the pack cool a little worse: the extremes differ.
        self.temps = [approach(t, self.ambient_c + heat_w * self.kelvin_per_watt
                               * (1 + 0.05 * n), dt_s, self.time_constant_s)
                      for n, t in enumerate(self.temps)]

    def cell_voltages(self) -> list[float]:
        """Each cell's terminal voltage (V)."""
        return [_ocv(soc) + self.current_a * self.resistance_ohm for soc in self.socs]

    def values(self) -> dict[str, float]:
        """The bundled database's signal values for this pack now."""
        volts, temps = self.cell_voltages(), self.temps
        values = {"PackVoltage": sum(volts), "PackCurrent": self.current_a,
                  "StateOfCharge": 100 * sum(self.socs) / self.cells,
                  "CellVoltageMax": max(volts), "CellVoltageMin": min(volts),
                  "CellTempMax": max(temps), "CellTempMin": min(temps)}
        values |= {f"Cell{n + 1}_V": v for n, v in enumerate(volts)}
        return values


class BmsNode:
    """A BMS on ``bus``: sends ``node``'s messages of ``database`` from a simulated pack,
    listens to the station's. ``speed`` runs the pack faster than the wall clock."""

    def __init__(self, bus: can.BusABC, database: Database, *, node: str = "BMS",
                 pack: Pack | None = None, speed: float = 1.0) -> None:
        self.bus, self.database = bus, database
        self.time = ModelTime(speed)
        self.pack = pack or Pack()
        self.sends = [m for m in database.messages if node in (m.senders or [])]
        if not self.sends:
            raise ValueError(f"the database has no message sent by node {node!r}")
        self.listens = {(m.frame_id, m.is_extended_frame): m for m in database.messages
                        if m not in self.sends}
        #: Fixed values by DBC signal name, over the pack's and the initial ones.
        self.overrides: dict[str, float] = {}
        #: The station's last frames, decoded, by message name, and when they came (monotonic).
        self.received: dict[str, dict[str, float]] = {}
        self.received_at: dict[str, float] = {}
        self.frames_sent = 0
        self._silent: set[str] = set()
        self._count = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start sending and listening on threads of their own."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._send_loop, daemon=True,
                                          name="bms-node-send"),
                         threading.Thread(target=self._listen_loop, daemon=True,
                                          name="bms-node-listen")]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads (the bus stays open: it is the caller's)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def silence(self, *names: str) -> None:
        """Stop sending the messages ``names`` (all when none is given)."""
        self._silent |= set(self._names(names))

    def resume(self, *names: str) -> None:
        """Send the messages ``names`` again (all when none is given)."""
        self._silent -= set(self._names(names))

    def send_frame(self, message_name: str, length: int) -> None:
        """Send one frame of ``message_name`` with ``length`` zero bytes (a wrong length when
        it differs from the database's)."""
        message = self.database.get_message_by_name(message_name)
        self.bus.send(can.Message(arbitration_id=message.frame_id,
                                  is_extended_id=message.is_extended_frame,
                                  data=bytes(length)))

    def frames(self, message: Message) -> list[can.Message]:
        """The frames that send ``message`` now: one, or one per multiplexer value."""
        values = {s.name: float(s.initial if isinstance(s.initial, int | float) else 0)
                  for s in message.signals} | self.values()
        groups: list[dict[str, float]] = [{}]
        selector = next((s for s in message.signals if s.is_multiplexer), None)
        if selector is not None:
            ids = sorted({i for s in message.signals for i in (s.multiplexer_ids or [])})
            groups = [{selector.name: i} for i in ids]
        frames = []
        for group in groups:
            data = message.encode({**values, **group}, strict=False, padding=True)
            frames.append(can.Message(arbitration_id=message.frame_id,
                                      is_extended_id=message.is_extended_frame, data=data))
        return frames

    def contactor_closed(self) -> bool:
        """Whether the contactor is closed: the station asks for it, and its heartbeat is
        fresh."""
        alive = time.monotonic() - self.received_at.get("STATION_Heartbeat", -math.inf) \
            <= HEARTBEAT_TIMEOUT_S
        request = self.received.get("STATION_ChargeControl", {})
        return alive and request.get("ContactorRequest", 0) >= 1

    def values(self) -> dict[str, float]:
        """The values the node sends now, by signal name: the pack's, the contactor's, the
        overrides."""
        return {**self.pack.values(), "ContactorClosed": float(self.contactor_closed()),
                "ChargeAllowed": float(self.pack.cell_voltages()[-1] < 4.15),
                "PackCounter": float(self._count % 16), **self.overrides}

    def _follow_requests(self) -> None:
        """Set the pack's current: the station's charge current limit while it enables
        charging through a closed contactor, else the PackCurrent override (0 without)."""
        request = self.received.get("STATION_ChargeControl", {})
        charging = self.contactor_closed() and request.get("ChargeEnable", 0) >= 1
        self.pack.current_a = request.get("ChargeCurrentLimit", 0.0) if charging else \
            self.overrides.get("PackCurrent", 0.0)

    def _names(self, names: Iterable[str]) -> list[str]:
        known = [m.name for m in self.sends]
        chosen = list(names) or known
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise ValueError(f"the node does not send {', '.join(unknown)} (it sends "
                             f"{', '.join(known)})")
        return chosen

    def _send_loop(self) -> None:
        periods = [(m.cycle_time or 100) / 1000 for m in self.sends]
        due = [time.monotonic()] * len(self.sends)
        self.time.restart()
        while not self._stop.is_set():
            now = time.monotonic()
            self.pack.advance(self.time.elapsed())
            self._follow_requests()
            for n, message in enumerate(self.sends):
                if now < due[n]:
                    continue
                due[n] = max(due[n] + periods[n], now)
                if message.name in self._silent:
                    continue
                for frame in self.frames(message):
                    try:
                        self.bus.send(frame)
                    except can.CanError as error:
                        log.error("BMS node: cannot send %s: %s", message.name, error)
                        return
                    self.frames_sent += 1
                self._count += 1
            self._stop.wait(max(0.0, min(due) - time.monotonic()))

    def _listen_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.bus.recv(0.05)
            except can.CanError:
                return
            if frame is None:
                continue
            message = self.listens.get((frame.arbitration_id, frame.is_extended_id))
            if message is None or len(frame.data) != message.length:
                continue
            decoded = cast("dict[str, float]",
                           message.decode(bytes(frame.data), decode_choices=False))
            self.received[message.name] = {k: float(v) for k, v in decoded.items()}
            self.received_at[message.name] = time.monotonic()


class SlcanAdapter:
    """An SLCAN (Lawicel) adapter: its serial side on a pty (:attr:`path` for the station), its
    CAN side ``bus``. Commands: ``S0``-``S8``/``s`` bit rate, ``O``/``L`` open, ``C`` close,
    ``V``/``N``/``F`` version, serial number, flags, ``Z`` timestamps, ``t``/``T``/``r``/``R``
    frames (answered ``z``/``Z``); anything else, or a frame while closed, is answered BEL."""

    def __init__(self, bus: can.BusABC) -> None:
        self.bus = bus
        self.path = ""
        self.is_open = False
        self.commands: list[str] = []  # every command the host sent, for tests
        self._master = -1
        self._slave = -1
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> str:
        """Open the pty pair and serve it; returns the path a station opens."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes as they are: no echo, no CR/LF translation
        self.path = os.ttyname(self._slave)
        self._stop.clear()
        self._threads = [threading.Thread(target=self._host_loop, daemon=True, name="slcan-host"),
                         threading.Thread(target=self._bus_loop, daemon=True, name="slcan-bus")]
        for thread in self._threads:
            thread.start()
        return self.path

    def stop(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self.hang_up()

    def hang_up(self) -> None:
        """Close the pty as an unplugged adapter would: the station's port fails."""
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            if self._master >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._master, data)

    def _host_loop(self) -> None:
        pending = b""
        while not self._stop.is_set():
            master = self._master
            if master < 0:
                return
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
                chunk = os.read(master, 4096) if ready else b""
            except OSError:
                return
            pending += chunk
            *lines, pending = pending.split(b"\r")
            for line in lines:
                self._write(self._answer(line.decode("ascii", "replace")))

    def _answer(self, command: str) -> bytes:
        """The adapter's reply to one command (without its CR)."""
        self.commands.append(command)
        ok, error = b"\r", b"\x07"
        kind = command[:1]
        if command == "":
            return ok
        if kind in "Ss" and len(command) > 1:
            valid = kind == "s" or command[1:] in {str(n) for n in range(9)}
            return ok if valid and not self.is_open else error
        if command in ("O", "L"):
            if self.is_open:
                return error
            self.is_open = True
            return ok
        if command == "C":
            self.is_open = False
            return ok
        if command == "V":
            return b"V1013\r"
        if command == "N":
            return b"NEMU1\r"
        if command == "F":
            return b"F00\r"
        if kind == "Z" and command[1:] in ("0", "1"):
            return ok
        if kind in "tTrR":
            frame = _parse_frame(command)
            if frame is None or not self.is_open:
                return error
            try:
                self.bus.send(frame)
            except can.CanError:
                return error
            return b"Z\r" if frame.is_extended_id else b"z\r"
        return error

    def _bus_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.bus.recv(0.05)
            except can.CanError:
                return
            if frame is None or not self.is_open:
                continue
            ident = (f"T{frame.arbitration_id:08X}" if frame.is_extended_id
                     else f"t{frame.arbitration_id:03X}")
            if frame.is_remote_frame:
                ident = ident.replace("t", "r").replace("T", "R")
                self._write(f"{ident}{frame.dlc}\r".encode())
            else:
                self._write(f"{ident}{len(frame.data)}{frame.data.hex().upper()}\r".encode())


def _parse_frame(command: str) -> can.Message | None:
    """The frame of an SLCAN ``t``/``T``/``r``/``R`` command, or None if it is malformed."""
    extended = command[0] in "TR"
    remote = command[0] in "rR"
    width = 8 if extended else 3
    head = command[1:1 + width]
    dlc_text = command[1 + width:2 + width]
    if len(head) != width or not dlc_text.isdigit() or int(dlc_text) > 8:
        return None
    try:
        ident = int(head, 16)
        dlc = int(dlc_text)
        data = b"" if remote else bytes.fromhex(command[2 + width:])
    except ValueError:
        return None
    if ident >= (1 << 29 if extended else 1 << 11) or (not remote and len(data) != dlc):
        return None
    return can.Message(arbitration_id=ident, is_extended_id=extended, is_remote_frame=remote,
                       dlc=dlc, data=data)

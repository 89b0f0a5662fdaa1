"""The CAN device: a bus (python-can) and a database (cantools) as an OSI device.

Frames are decoded on the bus's reader thread as they arrive; :meth:`CanDevice.read` only
copies the latest values. A received message that stays away longer than its timeout makes
its signals read NaN (never the last value) and raises the device's ``alarm`` signal. Messages
the station sends are encoded from the database: periodically on a sender thread (a heartbeat,
a charge-enable frame) and at once when a plan writes one of their signals.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import cast

import can
from cantools.database.errors import DecodeError, EncodeError

from cellbench_can.bus import SharedBus, acquire, check_interface, release
from cellbench_can.database import (
    ALARM,
    BAD_FRAMES,
    FrameKey,
    Received,
    Sent,
    close_matches,
    describe,
    frame_values,
    layout,
    load,
)
from cellbench_can.settings import CanSettings
from cellbench_sdk import (
    Clock,
    DeviceConnectionError,
    DeviceWorker,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
    WhileOpen,
    call_with_timeout,
)

log = logging.getLogger(__name__)

#: Seconds a frame may wait for room on the bus before sending it fails.
SEND_TIMEOUT_S = 0.5
#: Seconds opening the bus may take (a serial adapter waits after opening its port).
OPEN_TIMEOUT_S = 10.0


class CanDevice(OsiDevice):
    """The signals of a CAN database on a bus: every received signal to read, every signal of
    a message the station sends to write."""

    def __init__(self, settings: CanSettings) -> None:
        self.settings = settings
        self.name = f"can:{settings.bus.interface}:{settings.bus.channel}"
        check_interface(settings.bus.interface)
        database = load(settings.database, strict=settings.strict)
        self.layout = layout(settings, database)
        bitrate = settings.bus.bitrate
        self._info = {"bus": f"{settings.bus.interface}:{settings.bus.channel}",
                      **({"bitrate": str(bitrate)} if bitrate else {}),
                      **describe(settings.database, database)}
        self._clock = WhileOpen[Clock](self)
        self._now = time.monotonic  # the open clock's now(), for the reader thread
        self._bus: SharedBus | None = None
        self._worker: DeviceWorker | None = None
        self._handlers: dict[FrameKey, functools.partial[None]] = {}
        # Written by the reader thread, read by read(): single dict assignments, no lock.
        self._latest: dict[str, tuple[float, float]] = {}  # signal -> (value, clock time)
        self._seen: dict[FrameKey, float] = {}  # message -> clock time of its last good frame
        self._bad_frames = 0
        #: Frames decoded since open (for diagnostics and benchmarks).
        self.frames_decoded = 0
        self._warned: set[FrameKey] = set()
        self._reported: dict[str, float] = {}  # signal -> time_s of its last reading
        self._overdue: list[str] = []
        # What the station sends: values by message and DBC signal, guarded by _send_lock,
        # which also keeps frames of one message in order between the sender and write().
        self._send_lock = threading.Lock()
        self._commanded: dict[str, dict[str, float]] = {}
        self._counts: dict[str, int] = {}
        self._written_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._send_error: str | None = None

    @property
    def signals(self) -> Sequence[SignalInfo]:
        return self.layout.infos

    @property
    def info(self) -> Mapping[str, str]:
        """The bus and bit rate, and the database's file name, hash and version: the station
        records them with every test, so a result says which frames meant what."""
        return dict(self._info)

    async def open(self, clock: Clock) -> None:
        self._worker = DeviceWorker(self.name, 2 * SEND_TIMEOUT_S)
        opening = asyncio.get_running_loop().run_in_executor(
            None, acquire, self.settings.bus, self.name)
        try:
            self._bus = await call_with_timeout(asyncio.shield(opening), OPEN_TIMEOUT_S,
                                                self.name, "opening the bus")
        except BaseException:
            # Given up on (a timeout, a cancelled open): a bus opened later is given back.
            opening.add_done_callback(_release_late)
            raise
        opened_at = clock.now()
        self._now = clock.now
        self._latest, self._reported, self._bad_frames, self._warned = {}, {}, 0, set()
        self.frames_decoded = 0
        self._seen = {key: opened_at for key in self.layout.received}  # a grace of one timeout
        self._overdue, self._send_error = [], None
        self._commanded = {name: dict(sent.initial) for name, sent in self.layout.sent.items()}
        self._counts = {name: 0 for name in self.layout.sent}
        self._written_at = {signal: opened_at for signal in self.layout.writable}
        for key, received in self.layout.received.items():
            self._handlers[key] = functools.partial(self._on_frame, received)
            self._bus.subscribe(key, self._handlers[key])
        self._stop.clear()
        if any(sent.period_s > 0 for sent in self.layout.sent.values()):
            self._sender = threading.Thread(target=self._send_periodically, daemon=True,
                                            name=f"cellbench-{self.name}-send")
            self._sender.start()
        self._clock.set(clock)

    async def close(self) -> None:
        self._clock.clear()
        bus = self._bus
        if bus is not None:
            await asyncio.to_thread(self._shut, bus)
            self._bus = None
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    async def read(self) -> Mapping[str, Reading]:
        now = self._clock.get().now()
        self._raise_failed()
        overdue = [received.message.name for key, received in self.layout.received.items()
                   if now - self._seen[key] > received.timeout_s]
        if overdue != self._overdue:
            if overdue:
                log.warning("%s: overdue: %s; their signals read NaN", self.name,
                            ", ".join(overdue))
            else:
                log.info("%s: every received message is back", self.name)
            self._overdue = overdue
        readings: dict[str, Reading] = {}
        latest, reported = self._latest, self._reported
        for signal, received in self.layout.readable.items():
            value, t = latest.get(signal, (math.nan, now))
            if now - t > received.timeout_s:
                value, t = math.nan, now
            # A frame stamped on the reader thread just before now() may land after a
            # timed-out NaN stamped now: a signal's time never goes back.
            t = min(max(t, reported.get(signal, -math.inf)), now)
            reported[signal] = t
            readings[signal] = Reading(value, t)
        with self._send_lock:
            for signal, (sent, name) in self.layout.writable.items():
                readings[signal] = Reading(self._commanded[sent.message.name][name],
                                           self._written_at[signal])
        readings[ALARM] = Reading(1.0 if overdue else 0.0, now)
        readings[BAD_FRAMES] = Reading(float(self._bad_frames), now)
        return readings

    async def write(self, signal: str, value: float) -> None:
        now = self._clock.get().now()
        self._raise_failed()
        target = self.layout.writable.get(signal)
        if target is None:
            if signal in self.layout.readable or signal in (ALARM, BAD_FRAMES):
                raise NotSupported(self.name, f"{signal} is received, not sent: it cannot be "
                                              "written")
            raise OutOfRange(self.name, f"no signal {signal!r}"
                                        f"{close_matches(signal, self.layout.writable)}")
        if not math.isfinite(value):
            raise OutOfRange(self.name, f"{signal} = {value}: not a finite number")
        sent, name = target
        with self._send_lock:
            values = {**self._commanded[sent.message.name], name: value}
        try:
            frame_values(sent.message, values)
        except (EncodeError, ValueError) as error:
            raise OutOfRange(self.name, f"{signal} = {value:g}: {error}") from None
        with self._send_lock:
            self._commanded[sent.message.name][name] = float(value)
            self._written_at[signal] = now
        assert self._worker is not None  # set while open
        await self._worker.run(functools.partial(self._send, sent), 2 * SEND_TIMEOUT_S,
                               f"sending {sent.message.name}")

    def _on_frame(self, received: Received, frame: can.Message) -> None:
        """On the reader thread: decode one frame of ``received``'s id and keep its values,
        stamped with the clock's time once they are available."""
        message = received.message
        if len(frame.data) != message.length:
            self._bad(received, f"{len(frame.data)} bytes instead of {message.length}")
            return
        try:
            # Without choices, every value is a number.
            decoded = cast("dict[str, float]",
                           message.decode(bytes(frame.data), decode_choices=False))
        except (DecodeError, ValueError, KeyError) as error:  # an unknown multiplexer value
            self._bad(received, str(error))
            return
        now = self._now()
        self.frames_decoded += 1
        self._seen[received.key] = now
        names, latest = received.signals, self._latest
        for dbc_name, value in decoded.items():
            signal = names.get(dbc_name)
            if signal is not None:
                latest[signal] = (float(value), now)

    def _bad(self, received: Received, why: str) -> None:
        self._bad_frames += 1
        if received.key not in self._warned:  # once per message: a broken node floods
            self._warned.add(received.key)
            log.warning("%s: frame 0x%X (%s) cannot be decoded: %s; its signals are not "
                        "updated", self.name, received.message.frame_id,
                        received.message.name, why)

    def _send(self, sent: Sent) -> None:
        """Encode ``sent`` from the commanded values (its counter counted up) and send it."""
        bus = self._bus
        if bus is None:
            raise DeviceConnectionError(self.name, "not open")
        name = sent.message.name
        with self._send_lock:
            values = self._commanded[name]
            if sent.counter is not None:
                values = {**values, sent.counter: _wrapped(sent, self._counts[name])}
                self._counts[name] += 1
            frame = can.Message(arbitration_id=sent.message.frame_id,
                                is_extended_id=sent.message.is_extended_frame,
                                is_fd=sent.message.is_fd,
                                data=frame_values(sent.message, values))
            bus.send(frame, SEND_TIMEOUT_S)

    def _send_periodically(self) -> None:
        """The sender thread: every periodic message at its period, until stopped or a send
        fails (then read() and write() report the failure)."""
        periodic = [sent for sent in self.layout.sent.values() if sent.period_s > 0]
        due = [time.monotonic()] * len(periodic)
        while True:
            for n, sent in enumerate(periodic):
                now = time.monotonic()
                if now < due[n]:
                    continue
                try:
                    self._send(sent)
                except DeviceConnectionError as error:
                    self._send_error = error.message
                    log.error("%s: %s", self.name, error.message)
                    return
                # Late (a stalled machine)? Carry on from now instead of sending a burst.
                due[n] = max(due[n] + sent.period_s, now)
            if self._stop.wait(max(0.0, min(due) - time.monotonic())):
                return

    def _raise_failed(self) -> None:
        bus = self._bus
        if bus is not None and bus.error is not None:
            raise DeviceConnectionError(self.name, f"the bus failed: {bus.error}")
        if self._send_error is not None:
            raise DeviceConnectionError(self.name, self._send_error)

    def _shut(self, bus: SharedBus) -> None:
        """Stop sending, send the on_close values once, stop listening, give the bus back."""
        self._stop.set()
        if self._sender is not None:
            self._sender.join(timeout=2.0)
            self._sender = None
        closing: dict[str, Sent] = {}
        with self._send_lock:
            for signal, value in self.settings.on_close.items():
                sent, name = self.layout.writable[signal]
                self._commanded[sent.message.name][name] = value
                closing[sent.message.name] = sent
        for sent in closing.values():
            try:
                self._send(sent)
            except DeviceConnectionError as error:
                log.error("%s: on close, %s could not be sent: %s", self.name,
                          sent.message.name, error.message)
        for key, handler in self._handlers.items():
            bus.unsubscribe(key, handler)
        self._handlers.clear()
        release(bus)


def _release_late(opening: asyncio.Future[SharedBus]) -> None:
    """Give back a bus whose opening finished after its device gave up waiting."""
    if not opening.cancelled() and opening.exception() is None:
        release(opening.result())


def _wrapped(sent: Sent, count: int) -> float:
    """The ``count``-th value of ``sent``'s counter: from its minimum up to its maximum, then
    round again."""
    assert sent.counter is not None
    signal = sent.message.get_signal_by_name(sent.counter)
    low = int(signal.minimum if signal.minimum is not None else 0)
    high = int(signal.maximum if signal.maximum is not None else (1 << signal.length) - 1)
    return float(low + count % (high - low + 1))

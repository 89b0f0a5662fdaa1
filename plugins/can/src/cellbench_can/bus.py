"""One opened python-can bus per interface and channel, shared by every device on it, with one
reader thread that hands each frame, as it arrives, to the devices that listen for its id.

Sharing is what lets several device sections of a station (one per cycler channel, each with
the signals of its own cells) listen to one BMS on one adapter: an adapter can be opened once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import can

from cellbench_can.database import CanConfigError, close_matches
from cellbench_can.settings import BusSettings
from cellbench_sdk import DeviceConnectionError

log = logging.getLogger(__name__)

#: What a device hands the bus to be called, on the reader thread, with each frame of its ids.
FrameHandler = Callable[[can.Message], None]
#: How long the reader waits for a frame before it looks whether it should stop (s).
_POLL_S = 0.05


class SharedBus:
    """An opened bus, its reader thread and the handlers of the frame ids devices listen to."""

    def __init__(self, settings: BusSettings, bus: can.BusABC) -> None:
        self.settings = settings
        self.name = f"{settings.interface}:{settings.channel}"
        self._bus = bus
        self._send_lock = threading.Lock()  # one frame at a time on interfaces that write bytes
        self._handlers: dict[tuple[int, bool], list[FrameHandler]] = {}
        self._handlers_lock = threading.Lock()
        self._users = 0
        self._stop = threading.Event()
        #: Why the bus failed (the reader stopped), or None while it works.
        self.error: str | None = None
        self._reader = threading.Thread(target=self._read, name=f"cellbench-can-{self.name}",
                                        daemon=True)

    def subscribe(self, key: tuple[int, bool], handler: FrameHandler) -> None:
        """Call ``handler`` with every frame whose (arbitration id, extended) is ``key``."""
        with self._handlers_lock:
            # Copy on write: the reader thread iterates the lists without a lock.
            self._handlers[key] = [*self._handlers.get(key, []), handler]

    def unsubscribe(self, key: tuple[int, bool], handler: FrameHandler) -> None:
        """Stop calling ``handler`` for ``key``."""
        with self._handlers_lock:
            rest = [h for h in self._handlers.get(key, []) if h is not handler]
            if rest:
                self._handlers[key] = rest
            else:
                self._handlers.pop(key, None)

    def send(self, frame: can.Message, timeout_s: float) -> None:
        """Put ``frame`` on the bus; :class:`DeviceConnectionError` when the bus refuses it."""
        if self.error is not None:
            raise DeviceConnectionError(self.name, f"the bus failed: {self.error}")
        try:
            with self._send_lock:
                self._bus.send(frame, timeout=timeout_s)
        except (can.CanError, OSError, ValueError) as error:
            raise DeviceConnectionError(self.name, f"cannot send frame 0x{frame.arbitration_id:X}"
                                                   f": {error}") from None

    def _read(self) -> None:
        """The reader thread: receive, hand each frame to its handlers, until stopped or the
        bus fails (then :attr:`error` says why)."""
        while not self._stop.is_set():
            try:
                frame = self._bus.recv(_POLL_S)
            except Exception as error:  # any backend's failure ends reading; devices report it
                if not self._stop.is_set():
                    self.error = f"{type(error).__name__}: {error}"
                    log.error("CAN bus %s failed: %s", self.name, self.error)
                return
            if frame is None or frame.is_error_frame or frame.is_remote_frame:
                continue
            for handler in self._handlers.get((frame.arbitration_id, frame.is_extended_id), ()):
                handler(frame)

    def _close(self) -> None:
        self._stop.set()
        if self._reader.is_alive():
            self._reader.join(timeout=2.0)
        try:
            self._bus.shutdown()
        except Exception as error:  # closing must not fail: the bus is gone either way
            log.warning("CAN bus %s: shutdown failed: %s", self.name, error)


def check_interface(interface: str) -> None:
    """Refuse, when the station file is read, an interface python-can does not have (a typo, a
    plugin of python-can that is not installed), naming the closest it has."""
    if interface not in can.VALID_INTERFACES:
        raise CanConfigError(f"bus.interface: python-can has no interface {interface!r}"
                             f"{close_matches(interface, sorted(can.VALID_INTERFACES))}")


_registry_lock = threading.Lock()
_buses: dict[tuple[str, str], SharedBus] = {}


def acquire(settings: BusSettings, device: str) -> SharedBus:
    """The opened bus of ``settings``, opening it for the first device; every acquire is paired
    with a :func:`release`. Raises :class:`DeviceConnectionError` naming ``device`` when the
    bus cannot be opened, or is open already with other settings."""
    key = (settings.interface, str(settings.channel))
    with _registry_lock:
        shared = _buses.get(key)
        if shared is not None:
            if shared.settings != settings:
                raise DeviceConnectionError(device, f"bus {shared.name} is already open with "
                                                    "other settings; give every device on it "
                                                    "the same bus table")
            if shared.error is not None:
                raise DeviceConnectionError(device, f"bus {shared.name} failed: "
                                                    f"{shared.error}")
        else:
            shared = SharedBus(settings, _open(settings, device))
            shared._reader.start()
            _buses[key] = shared
        shared._users += 1
        return shared


def release(shared: SharedBus) -> None:
    """Give back a bus from :func:`acquire`; the last user closes it."""
    with _registry_lock:
        shared._users -= 1
        if shared._users > 0:
            return
        _buses.pop((shared.settings.interface, str(shared.settings.channel)), None)
    shared._close()


def _open(settings: BusSettings, device: str) -> can.BusABC:
    options: dict[str, Any] = dict(settings.options)
    if settings.bitrate is not None:
        options["bitrate"] = settings.bitrate
    try:
        return can.Bus(interface=settings.interface, channel=settings.channel, **options)
    except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as error:
        raise DeviceConnectionError(device, f"cannot open CAN bus {settings.interface}:"
                                            f"{settings.channel}: {error}") from None

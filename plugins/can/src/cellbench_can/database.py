"""The CAN database (DBC, KCD, SYM, ARXML) and what a device makes of it with its settings: the
messages it receives and sends, and the device signal each of their signals becomes.

Every problem is found here, when the station file is read, with an error that names the
database file and the message or signal (and the closest names it does have).
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cantools
from cantools.database import Database, Message, Signal
from cantools.database.errors import EncodeError

from cellbench_can.settings import CanSettings
from cellbench_sdk import SignalInfo

#: Device signals every CAN device has besides the database's.
ALARM = "alarm"
BAD_FRAMES = "bad_frames"
RESERVED = (ALARM, BAD_FRAMES)
#: Temperature units as databases write them, in the notation cellbench's units use.
_UNITS = {"degC": "°C", "deg C": "°C", "DegC": "°C", "Cel": "°C", "°c": "°C"}


class CanConfigError(ValueError):
    """The database cannot be read, or the settings name what it does not have."""


#: A frame's identity on the bus: arbitration id and whether it is extended (29 bits).
FrameKey = tuple[int, bool]


@dataclass(frozen=True)
class Received:
    """A message the station receives: its device signals by DBC signal name, and how long it
    may stay away before they read as missing."""

    message: Message
    timeout_s: float
    signals: dict[str, str]  # DBC signal name -> device signal name

    @property
    def key(self) -> FrameKey:
        """The frame id this message arrives with."""
        return (self.message.frame_id, self.message.is_extended_frame)


@dataclass(frozen=True)
class Sent:
    """A message the station sends: every ``period_s`` seconds (0: only when written), with
    these initial values by DBC signal name, counting ``counter`` up with every send."""

    message: Message
    period_s: float
    initial: dict[str, float]
    counter: str | None
    signals: dict[str, str] = field(default_factory=dict)  # DBC name -> device signal name


@dataclass(frozen=True)
class Layout:
    """Everything a device needs from its database: what it receives and sends, its signals."""

    received: dict[FrameKey, Received]
    sent: dict[str, Sent]  # by message name
    infos: tuple[SignalInfo, ...]
    readable: dict[str, Received]  # device signal -> its message
    writable: dict[str, tuple[Sent, str]]  # device signal -> its message and DBC signal


def describe(path: Path, database: Database) -> dict[str, str]:
    """What identifies a database in a test's record: its file name, the first 16 hex digits of
    its SHA-256 (a changed file shows) and its version, where it gives one."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    described = {"database": path.name, "database_sha256": digest}
    if database.version:
        described["database_version"] = database.version
    return described


def load(path: Path, *, strict: bool = True) -> Database:
    """Read a CAN database; :class:`CanConfigError` names the file and what is wrong."""
    try:
        database = cantools.database.load_file(path, strict=strict)
    except OSError as error:
        raise CanConfigError(f"{path}: cannot read the CAN database: "
                             f"{error.strerror or error}") from None
    except Exception as error:  # cantools raises its own errors and ValueErrors of its parsers
        raise CanConfigError(f"{path}: not a valid CAN database: {error}") from None
    if not isinstance(database, Database) or not database.messages:
        raise CanConfigError(f"{path}: the CAN database has no messages")
    return database


def layout(settings: CanSettings, database: Database) -> Layout:
    """The messages and device signals of ``settings`` over ``database``."""
    path = settings.database
    nodes = [node.name for node in database.nodes]
    if settings.node is not None and settings.node not in nodes:
        raise CanConfigError(f"{path}: node: no node {settings.node!r} (its nodes: "
                             f"{', '.join(nodes) or 'none'})")
    sent = {name: _sent(path, database, name, spec.period_s, spec.values, spec.counter)
            for name, spec in settings.transmit.items()}
    for name in settings.timeouts:
        message = _message(path, database, name, "timeouts")
        if message.name in sent:
            raise CanConfigError(f"{path}: timeouts names {name!r}, which the station sends "
                                 "(see transmit)")
    chosen = _chosen(settings, database, sent)
    received: dict[FrameKey, Received] = {}
    infos: list[SignalInfo] = []
    readable: dict[str, Received] = {}
    writable: dict[str, tuple[Sent, str]] = {}
    for alias, (message, signal) in chosen.items():
        if message.name not in sent and _stations(settings, message):
            raise CanConfigError(f"{path}: signals: {alias!r} is {message.name}.{signal.name}, "
                                 f"which node {settings.node} (the station) sends: list "
                                 f"{message.name} in transmit")
        if message.name in sent:
            entry = sent[message.name]
            entry.signals[signal.name] = alias
            writable[alias] = (entry, signal.name)
            infos.append(_info(alias, message, signal, writable=True))
            continue
        key = (message.frame_id, message.is_extended_frame)
        if key not in received:
            received[key] = Received(message, _timeout(settings, message), {})
        received[key].signals[signal.name] = alias
        readable[alias] = received[key]
        infos.append(_info(alias, message, signal, writable=False))
    infos.append(SignalInfo(ALARM, "", description="1 while a received message is overdue "
                                                   "(its signals read NaN), else 0"))
    infos.append(SignalInfo(BAD_FRAMES, "", description="frames of known ids that could not "
                                                        "be decoded (wrong length), since open"))
    for alias, value in settings.on_close.items():
        if alias not in writable:
            raise CanConfigError(f"{path}: on_close names {alias!r}, which is not a writable "
                                 f"signal{close_matches(alias, writable)}")
        entry, signal_name = writable[alias]
        _encode(path, entry.message, {**entry.initial, signal_name: value}, "on_close")
    return Layout(received, sent, tuple(infos), readable, writable)


def frame_values(message: Message, values: dict[str, float]) -> bytes:
    """``message`` encoded from ``values`` (every signal of it), refused beyond the DBC's
    ranges; raises :class:`cantools.database.errors.EncodeError`."""
    return bytes(message.encode(values, scaling=True, padding=False, strict=True))


def _chosen(settings: CanSettings, database: Database,
            sent: dict[str, Sent]) -> dict[str, tuple[Message, Signal]]:
    """Device signal name -> the message and DBC signal it is."""
    path = settings.database
    if settings.signals is not None:
        chosen: dict[str, tuple[Message, Signal]] = {}
        for alias, reference in settings.signals.items():
            if alias in RESERVED:
                raise CanConfigError(f"{path}: signals: {alias!r} is the device's own signal; "
                                     "choose another name")
            message, signal = _signal(path, database, reference)
            entry = sent.get(message.name)
            if entry is not None and signal.name == entry.counter:
                raise CanConfigError(f"{path}: signals: {reference!r} is the counter of "
                                     f"{message.name}, which the device counts itself")
            chosen[alias] = (message, signal)
        return chosen
    pairs = [(message, signal) for message in database.messages for signal in message.signals
             if _offered(message, signal, sent) and (message.name in sent
                                                      or not _stations(settings, message))]
    repeated = Counter(signal.name for _, signal in pairs)
    return {(signal.name if repeated[signal.name] == 1 and signal.name not in RESERVED
             else f"{message.name}_{signal.name}"): (message, signal)
            for message, signal in pairs}


def _stations(settings: CanSettings, message: Message) -> bool:
    """Whether the station's node sends ``message`` (so it is never received)."""
    return settings.node is not None and settings.node in (message.senders or [])


def _offered(message: Message, signal: Signal, sent: dict[str, Sent]) -> bool:
    """Whether a signal is a device signal when the settings do not choose: not the selector
    of a multiplexed message the station receives, not the counter of one it sends."""
    entry = sent.get(message.name)
    if entry is None:
        return not signal.is_multiplexer
    return signal.name != entry.counter


def _sent(path: Path, database: Database, name: str, period_s: float | None,
          values: dict[str, float], counter: str | None) -> Sent:
    message = _message(path, database, name, "transmit")
    names = [signal.name for signal in message.signals]
    where = f"transmit.{message.name}"
    for signal_name in [*values, *([counter] if counter else [])]:
        if signal_name not in names:
            raise CanConfigError(f"{path}: {where}: message {message.name} has no signal "
                                 f"{signal_name!r}{close_matches(signal_name, names)}")
    initial = {signal.name: values.get(signal.name, _initial(signal))
               for signal in message.signals}
    _encode(path, message, initial, where)
    if period_s is None:
        period_s = (message.cycle_time or 0) / 1000
    return Sent(message, period_s, initial, counter)


def _initial(signal: Signal) -> float:
    """What a signal the settings give no value sends: the DBC's initial value, else 0 (or the
    nearest end of its range)."""
    if signal.raw_initial is not None:
        return float(cast(float, signal.raw_to_scaled(signal.raw_initial,
                                                      decode_choices=False)))
    low = signal.minimum if signal.minimum is not None else -math.inf
    high = signal.maximum if signal.maximum is not None else math.inf
    return float(min(max(0.0, low), high))


def _encode(path: Path, message: Message, values: dict[str, float], where: str) -> None:
    try:
        frame_values(message, values)
    except (EncodeError, ValueError, KeyError) as error:
        raise CanConfigError(f"{path}: {where}: cannot encode {message.name}: {error}") from None


def _timeout(settings: CanSettings, message: Message) -> float:
    if message.name in settings.timeouts:
        return settings.timeouts[message.name]
    if message.cycle_time:
        return message.cycle_time / 1000 * settings.timeout_cycles
    return settings.timeout_s


def _message(path: Path, database: Database, name: str, where: str) -> Message:
    for message in database.messages:
        if message.name == name:
            return message
    names = [message.name for message in database.messages]
    raise CanConfigError(f"{path}: {where}: no message {name!r}{close_matches(name, names)}")


def _signal(path: Path, database: Database, reference: str) -> tuple[Message, Signal]:
    """The message and signal ``'Message.Signal'`` or ``'Signal'`` (unique) names."""
    every = [(message, signal) for message in database.messages for signal in message.signals]
    message_name, dot, signal_name = reference.rpartition(".")
    matches = [(message, signal) for message, signal in every if signal.name == signal_name
               and (not dot or message.name == message_name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        where = ", ".join(f"{message.name}.{signal.name}" for message, signal in matches)
        raise CanConfigError(f"{path}: signals: {reference!r} is in several messages ({where}); "
                             "write Message.Signal")
    known = [f"{message.name}.{signal.name}" for message, signal in every]
    known += [signal.name for _, signal in every]
    raise CanConfigError(f"{path}: signals: no signal {reference!r}"
                         f"{close_matches(reference, known)}")


def close_matches(name: str, known: Any) -> str:
    """`` (did you mean ...?)`` with the names of ``known`` closest to ``name``, if any."""
    matches = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""


def _info(alias: str, message: Message, signal: Signal, *, writable: bool) -> SignalInfo:
    unit = signal.unit or ""
    where = f"{message.name}.{signal.name}"
    if signal.multiplexer_ids:
        where += (f" ({signal.multiplexer_signal} "
                  f"{', '.join(str(i) for i in signal.multiplexer_ids)})")
    comment = signal.comment if isinstance(signal.comment, str) else ""
    # A sent signal's DBC range is what writes are refused beyond (frame_values encodes
    # strictly): saying it lets plans and the station file be checked before a test starts.
    return SignalInfo(alias, _UNITS.get(unit, unit), writable=writable,
                      description=f"{where}: {comment}" if comment else where,
                      minimum=_bound(signal.minimum) if writable else None,
                      maximum=_bound(signal.maximum) if writable else None)


def _bound(value: Any) -> float | None:
    """A DBC range end as a float (cantools may give a Decimal or an int), or None."""
    return None if value is None else float(value)

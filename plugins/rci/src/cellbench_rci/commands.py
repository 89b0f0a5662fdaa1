"""The rci commands: one table of every command (its usage, help, the role it needs and its
handler), and the dispatcher that runs a command line against the station's control API.

TCP, TLS and serial connections all hand their lines to :meth:`Dispatcher.execute`, so every
transport answers the same commands the same way. A handler returns the reply payload (or
raises :class:`RciError`); the station's refusals (:class:`ControlError`) map to stable codes
here. Reads of live state are answered synchronously, without awaiting anything: ``STATE?`` is
the command automation systems poll.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cellbench_rci.protocol import (
    ErrorCode,
    RciError,
    err_line,
    format_value,
    ok_line,
    parse_channel,
    parse_channels,
    parse_int,
    parse_quantity,
    split_command,
)
from cellbench_sdk import Step, StepMode
from cellbench_sdk.access import AuthGuard
from cellbench_sdk.control import (
    ChannelView,
    ControlError,
    ControlErrorKind,
    LiveSample,
    StationControl,
    Subscription,
)
from cellbench_sdk.turns import in_turns
from cellbench_sdk.units import Dimension

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: The station's refusals as rci error codes.
CONTROL_CODES = {
    ControlErrorKind.NO_SUCH_CHANNEL: ErrorCode.NO_SUCH_CHANNEL,
    ControlErrorKind.BUSY: ErrorCode.CHANNEL_BUSY,
    ControlErrorKind.IDLE: ErrorCode.CHANNEL_IDLE,
    ControlErrorKind.NOT_PAUSED: ErrorCode.NOT_PAUSED,
    ControlErrorKind.PAUSED: ErrorCode.ALREADY_PAUSED,
    ControlErrorKind.NO_SUCH_PLAN: ErrorCode.NO_SUCH_PLAN,
    ControlErrorKind.BAD_PLAN: ErrorCode.PLAN_INVALID,
    ControlErrorKind.NO_SUCH_BATTERY: ErrorCode.NO_SUCH_BATTERY,
    ControlErrorKind.EXISTS: ErrorCode.ALREADY_EXISTS,
    ControlErrorKind.NO_SUCH_ENTRY: ErrorCode.NO_SUCH_ENTRY,
    ControlErrorKind.NOT_CANCELLABLE: ErrorCode.NOT_CANCELLABLE,
    ControlErrorKind.BAD_VALUE: ErrorCode.OUT_OF_RANGE,
    ControlErrorKind.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    ControlErrorKind.NOT_EXTERNAL: ErrorCode.NOT_EXTERNAL,
    ControlErrorKind.DEVICE_ERROR: ErrorCode.DEVICE_ERROR,
}

#: BATTERY ADD's optional keys: the registry field, its dimension, and whether it is a magnitude.
BATTERY_KEYS = {
    "vmax": ("voltage_max_v", Dimension.VOLTAGE),
    "vmin": ("voltage_min_v", Dimension.VOLTAGE),
    "vnom": ("nominal_voltage_v", Dimension.VOLTAGE),
    "icharge": ("current_max_charge_a", Dimension.CURRENT),
    "idischarge": ("current_max_discharge_a", Dimension.CURRENT),
    "tmax": ("temperature_max_c", Dimension.TEMPERATURE),
}

#: The longest name (battery, chemistry, plan) the registry stores.
NAME_LENGTH = 255


class Role(enum.IntEnum):
    """What a client may do: viewers read, operators also control."""

    VIEWER = 1
    OPERATOR = 2


@dataclass
class Session:
    """One client connection's state, as the dispatcher sees it.

    ``role`` is None until the client authenticated (where the interface asks for it);
    ``push`` sends a pushed line to the client (it drops what a slow reader cannot take);
    ``address`` is where it connects from (failed AUTH are counted per address).
    """

    identity: str
    role: Role | None
    push: Callable[[bytes], None]
    max_subscriptions: int = 64
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    quitting: bool = False
    address: str = ""
    auth_failures: int = 0

    def close(self) -> None:
        """End every subscription (the connection is gone)."""
        for subscription in self.subscriptions.values():
            subscription.close()
        self.subscriptions.clear()


Handler = Callable[["Dispatcher", Session, list[str]], "str | Awaitable[str]"]


@dataclass(frozen=True)
class Command:
    """One command: ``name`` as typed (one or two words), its arguments' usage, a help
    sentence, the role it needs (None: answered before authentication too), and how many
    arguments it takes."""

    name: str
    usage: str
    help: str
    role: Role | None
    args: tuple[int, int]
    handler: Handler


class Dispatcher:
    """Runs command lines for sessions against ``control``; ``tokens`` maps tokens to their
    role and label (empty: no AUTH needed); ``guard`` slows down and stops token guessing."""

    def __init__(self, control: StationControl, tokens: dict[str, tuple[Role, str]],
                 guard: AuthGuard | None = None) -> None:
        self.control = control
        self.tokens = tokens
        self.guard = guard or AuthGuard("rci")
        self.count = len(control.channel_numbers())
        self.channels_reply: str | None = None  # CHANNELS?: the channels never change
        # STATE? records by channel, with the station's generation they were made in: a
        # channel's state changes at most once per sample period, and is polled far more often.
        self._states: dict[int, tuple[int, str]] = {}

    def state_record(self, number: int) -> str:
        """A channel's STATE? record, made at most once per change of the station."""
        generation = self.control.generation
        cached = self._states.get(number)
        if cached is not None and cached[0] == generation:
            return cached[1]
        record = _state_record(self.control.channel(number))
        self._states[number] = (generation, record)
        return record

    def execute(self, session: Session, line: bytes) -> bytes | Awaitable[bytes]:
        """The reply line to a command line (without its line end), or an awaitable of it for
        commands that wait for the database or the runner."""
        try:
            command, args = self._parse(line)
            self._allow(session, command)
            result = command.handler(self, session, args)
        except Exception as err:
            return _error_line(session, line, err)
        if inspect.isawaitable(result):
            return self._finish(session, line, result)
        return ok_line(result)

    async def _finish(self, session: Session, line: bytes, result: Awaitable[str]) -> bytes:
        try:
            return ok_line(await result)
        except Exception as err:
            return _error_line(session, line, err)

    def _parse(self, line: bytes) -> tuple[Command, list[str]]:
        words = split_command(line)
        first = words[0].upper()
        command = COMMANDS.get(first)
        if len(words) > 1 and (pair := COMMANDS.get(f"{first} {words[1].upper()}")):
            command, words = pair, words[1:]
        if command is None:
            raise RciError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {words[0][:20]!r}; "
                           "HELP lists the commands")
        args = words[1:]
        low, high = command.args
        if not low <= len(args) <= high:
            raise RciError(ErrorCode.ARGUMENT_COUNT, f"usage: {command.name} {command.usage}"
                           .rstrip())
        return command, args

    def _allow(self, session: Session, command: Command) -> None:
        if command.role is None:
            return
        if session.role is None:
            raise RciError(ErrorCode.AUTH_REQUIRED, "authenticate first: AUTH <token>")
        if session.role < command.role:
            raise RciError(ErrorCode.FORBIDDEN, f"{command.name} needs the operator role; this "
                           "connection is a viewer")


def _error_line(session: Session, line: bytes, err: Exception) -> bytes:
    """The ERR reply to a command that raised ``err``: its own code for an rci error or a
    station refusal; anything else is a fault of the station, logged and answered as such."""
    if isinstance(err, RciError):
        return err_line(err.code, err.message)
    if isinstance(err, ControlError):
        return err_line(CONTROL_CODES[err.kind], err.message)
    log.error("rci: %s: %r failed", session.identity, line[:80], exc_info=err)
    return err_line(ErrorCode.INTERNAL, "internal error (logged by the station)")


def _records(items: Sequence[_T], render: Callable[[_T], str], head: Sequence[str] = ()
             ) -> str | Awaitable[str]:
    """``head`` and the records of ``items`` joined by ``;``: a long reply (STATE? ALL,
    SAMPLES?, CHANNELS? of a big station) is built over several turns of the event loop."""
    made = in_turns(items, render)
    if isinstance(made, list):
        return ";".join([*head, *made])

    async def joined() -> str:
        return ";".join([*head, *await made])

    return joined()


async def _joined(reply: str | Awaitable[str]) -> str:
    return reply if isinstance(reply, str) else await reply


def _name(text: str, what: str) -> str:
    if len(text) > NAME_LENGTH:
        raise RciError(ErrorCode.OUT_OF_RANGE, f"{what} is longer than {NAME_LENGTH} characters")
    return text


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)


# ---- the commands ---------------------------------------------------------------------------

def _ping(d: Dispatcher, s: Session, a: list[str]) -> str:
    return "PONG"


def _idn(d: Dispatcher, s: Session, a: list[str]) -> str:
    return f"cellbench,{d.control.name},{d.control.version}"


def _channels(d: Dispatcher, s: Session, a: list[str]) -> str | Awaitable[str]:
    if d.channels_reply is not None:
        return d.channels_reply

    def render(number: int) -> str:
        i = d.control.channel_info(number)
        return (f"{i.number},{i.driver},{i.voltage_min_v:g},{i.voltage_max_v:g},"
                f"{i.current_max_a:g}")

    async def build() -> str:
        d.channels_reply = await _joined(_records(numbers, render, [str(len(numbers))]))
        return d.channels_reply

    numbers = d.control.channel_numbers()
    return build()


def _state_record(v: ChannelView) -> str:
    f = format_value
    return (f"{v.number},{v.state.value},{_opt(v.test_id)},{v.step_no},{v.cycle},"
            f"{f(v.voltage_v)},{f(v.current_a)},{f(v.temperature_c)},{f(v.ah)},{f(v.wh)},"
            f"{f(v.test_time_s)}")


def _state(d: Dispatcher, s: Session, a: list[str]) -> str | Awaitable[str]:
    return _records(parse_channels(a[0], d.count), d.state_record)


def _step(d: Dispatcher, s: Session, a: list[str]) -> str:
    view = d.control.channel(parse_channel(a[0], d.count))
    return f"{view.step_no} {view.step_text}".rstrip()


async def _start(d: Dispatcher, s: Session, a: list[str]) -> str:
    channel = parse_channel(a[0], d.count)
    battery = _name(a[2], "the battery name") if len(a) > 2 else None
    return str(await d.control.start(channel, a[1], battery, identity=s.identity))


def _control(action: str) -> Handler:
    def handle(d: Dispatcher, s: Session, a: list[str]) -> str:
        getattr(d.control, action)(parse_channel(a[0], d.count), identity=s.identity)
        return ""
    return handle


#: SET's modes: the values each takes (name, dimension), the optional ones last.
SET_MODES: dict[str, tuple[StepMode, tuple[tuple[str, Dimension], ...], int]] = {
    "CC": (StepMode.CC, (("current_a", Dimension.CURRENT),), 1),
    "CV": (StepMode.CV, (("voltage_v", Dimension.VOLTAGE), ("current_a", Dimension.CURRENT)), 1),
    "CP": (StepMode.CP, (("power_w", Dimension.POWER),), 1),
    "REST": (StepMode.REST, (), 0),
}
SET_USAGE = "<ch> CC <A> | CV <V> [<A limit>] | CP <W> | REST"


def parse_setpoint(words: list[str]) -> Step:
    """The setpoint of SET's words after the channel: ``CC 1.5``, ``CV 4.2 0.5``, ``CP -3W``,
    ``REST`` (currents and powers signed, positive charging)."""
    mode = SET_MODES.get(words[0].upper())
    if mode is None:
        raise RciError(ErrorCode.SYNTAX, f"{words[0][:20]!r} is no setpoint mode; usage: SET "
                       f"{SET_USAGE}")
    step_mode, values, required = mode
    if not required <= len(words) - 1 <= len(values):
        raise RciError(ErrorCode.ARGUMENT_COUNT, f"usage: SET {SET_USAGE}")
    setpoint: dict[str, float | None] = {"current_a": None, "voltage_v": None,
                                         "power_w": None}
    for (name, dimension), text in zip(values, words[1:], strict=False):
        setpoint[name] = parse_quantity(text, name, dimension)
    try:
        return Step(step_mode, current_a=setpoint["current_a"],
                    voltage_v=setpoint["voltage_v"], power_w=setpoint["power_w"])
    except ValueError as err:  # a CV's current limit that is not positive
        raise RciError(ErrorCode.OUT_OF_RANGE, str(err)) from None


async def _set(d: Dispatcher, s: Session, a: list[str]) -> str:
    channel = parse_channel(a[0], d.count)
    await d.control.set_setpoint(channel, parse_setpoint(a[1:]), identity=s.identity)
    return ""


def _keepalive(d: Dispatcher, s: Session, a: list[str]) -> str:
    d.control.keepalive(parse_channel(a[0], d.count), identity=s.identity)
    return ""


async def _battery_add(d: Dispatcher, s: Session, a: list[str]) -> str:
    name, chemistry = _name(a[0], "the battery name"), _name(a[1], "the chemistry")
    capacity = parse_quantity(a[2], "capacity", Dimension.CHARGE)
    limits: dict[str, float] = {}
    for pair in a[3:]:
        key, sep, text = pair.partition("=")
        if not sep or key.lower() not in BATTERY_KEYS:
            raise RciError(ErrorCode.SYNTAX, f"{pair[:30]!r}: expected key=value with a key of "
                           f"{', '.join(BATTERY_KEYS)}")
        field_name, dimension = BATTERY_KEYS[key.lower()]
        if field_name in limits:
            raise RciError(ErrorCode.SYNTAX, f"{key} is given twice")
        value = parse_quantity(text, key.lower(), dimension)
        limits[field_name] = abs(value) if dimension is Dimension.CURRENT else value
    if capacity <= 0:
        raise RciError(ErrorCode.OUT_OF_RANGE, f"capacity: must be positive, not {a[2]}")
    await d.control.add_battery(name, chemistry, capacity, identity=s.identity, **limits)
    return name


async def _battery(d: Dispatcher, s: Session, a: list[str]) -> str:
    if not a:
        return await _joined(_records(await d.control.batteries(), lambda b: (
            f"{b.name},{b.chemistry},{b.nominal_capacity_ah:g}")))
    b = await d.control.battery(a[0])
    values = [("name", b.name), ("chemistry", b.chemistry),
              ("capacity_ah", b.nominal_capacity_ah), ("nominal_voltage_v", b.nominal_voltage_v),
              ("voltage_max_v", b.voltage_max_v), ("voltage_min_v", b.voltage_min_v),
              ("current_max_charge_a", b.current_max_charge_a),
              ("current_max_discharge_a", b.current_max_discharge_a),
              ("temperature_max_c", b.temperature_max_c)]
    return ",".join(f"{k}={_opt(v if not isinstance(v, float) else f'{v:g}')}"
                    for k, v in values)


async def _queue_add(d: Dispatcher, s: Session, a: list[str]) -> str:
    channel = parse_channel(a[0], d.count)
    battery = _name(a[2], "the battery name") if len(a) > 2 else None
    return str(await d.control.queue_add(channel, a[1], battery, identity=s.identity))


async def _queue(d: Dispatcher, s: Session, a: list[str]) -> str:
    return await _joined(_records(await d.control.queue_entries(), lambda e: (
        f"{e.id},{e.channel},{(e.plan_source or '-').replace(',', ' ').replace(';', ' ')},"
        f"{_opt(e.battery)},{e.status.value},{_opt(e.test_id)}")))


async def _queue_cancel(d: Dispatcher, s: Session, a: list[str]) -> str:
    await d.control.queue_cancel(parse_int(a[0], "entry", 1, 2**62), identity=s.identity)
    return ""


def _samples(d: Dispatcher, s: Session, a: list[str]) -> str | Awaitable[str]:
    channel = parse_channel(a[0], d.count)
    n = parse_int(a[1], "n", 1, d.control.ring_size)
    f = format_value
    return _records(d.control.last_samples(channel, n), lambda x: (  # taken now, at once
        f"{x.test_id},{x.seq},{f(x.test_time_s)},{f(x.voltage_v)},{f(x.current_a)},"
        f"{f(x.temperature_c)}"))


def push_line(x: LiveSample) -> bytes:
    """The pushed line of a subscribed channel's sample."""
    f = format_value
    return (f"*SAMPLE {x.channel} {x.test_id} {x.seq} {f(x.test_time_s)} {f(x.voltage_v)} "
            f"{f(x.current_a)} {f(x.temperature_c)} {x.step_index} {x.cycle} {f(x.step_ah)}\n"
            ).encode("ascii")


def _subscribe(d: Dispatcher, s: Session, a: list[str]) -> str:
    channel = parse_channel(a[0], d.count)
    if channel in s.subscriptions:
        return ""
    if len(s.subscriptions) >= s.max_subscriptions:
        raise RciError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {s.max_subscriptions} "
                       "subscriptions per connection")
    push = s.push
    s.subscriptions[channel] = d.control.subscribe(channel, lambda x: push(push_line(x)))
    return ""


def _unsubscribe(d: Dispatcher, s: Session, a: list[str]) -> str:
    subscription = s.subscriptions.pop(parse_channel(a[0], d.count), None)
    if subscription is not None:
        subscription.close()
    return ""


def _auth(d: Dispatcher, s: Session, a: list[str]) -> str | Awaitable[str]:
    guard = d.guard
    wait = guard.blocked(s.address)
    if wait:
        s.quitting = True
        raise RciError(ErrorCode.AUTH_FAILED, f"too many failed AUTH from {s.address}; try "
                       f"again in {math.ceil(wait)} s")
    found = d.tokens.get(a[0])
    if found is None:
        s.auth_failures += 1
        delay = guard.failed(s.address)
        message = "unknown token"
        if s.auth_failures >= guard.per_connection:
            s.quitting = True
            message += f"; {s.auth_failures} failed AUTH on this connection, closing"

        async def refuse() -> str:  # the connection is not read meanwhile
            await asyncio.sleep(delay)
            raise RciError(ErrorCode.AUTH_FAILED, message)

        return refuse()
    role, label = found
    s.role = role
    s.identity = f"token:{label}"
    return role.name.lower()


def _help(d: Dispatcher, s: Session, a: list[str]) -> str:
    if not a:
        return " ".join(COMMANDS)
    name = " ".join(a).upper()
    command = COMMANDS.get(name)
    if command is None:
        raise RciError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {name[:20]!r}")
    role = "" if command.role is None else f" [{command.role.name.lower()}]"
    return f"{command.name} {command.usage}".rstrip() + f": {command.help}{role}"


def _quit(d: Dispatcher, s: Session, a: list[str]) -> str:
    s.quitting = True
    return "BYE"


_V, _O = Role.VIEWER, Role.OPERATOR
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("PING", "", "answers PONG", None, (0, 0), _ping),
    Command("IDN?", "", "cellbench, the station's name and version", _V, (0, 0), _idn),
    Command("CHANNELS?", "", "the channel count, then each channel's driver and ranges", _V,
            (0, 0), _channels),
    Command("STATE?", "<ch|range|ALL>", "per channel: state, test, step, cycle, U, I, T, Ah, "
            "Wh, test time", _V, (1, 1), _state),
    Command("STEP?", "<ch>", "the step number and text", _V, (1, 1), _step),
    Command("START", "<ch> <plan> [battery]", "start a plan of the plans folder; answers the "
            "test id", _O, (2, 3), _start),
    Command("STOP", "<ch>", "stop the test, output off", _O, (1, 1), _control("stop")),
    Command("PAUSE", "<ch>", "output off, the step held", _O, (1, 1), _control("pause")),
    Command("RESUME", "<ch>", "go on with the paused step", _O, (1, 1), _control("resume")),
    Command("NEXT", "<ch>", "end the step, go on with the plan", _O, (1, 1),
            _control("next_step")),
    Command("SET", SET_USAGE, "in an external step: set the channel now (signed, + charges); "
            "restarts the watchdog", _O, (2, 4), _set),
    Command("KEEPALIVE", "<ch>", "in an external step: restart the watchdog", _O, (1, 1),
            _keepalive),
    Command("BATTERY ADD", "<name> <chemistry> <capacity> [key=value ...]", "register a "
            "battery; keys " + " ".join(BATTERY_KEYS), _O, (3, 3 + len(BATTERY_KEYS)),
            _battery_add),
    Command("BATTERY?", "[name]", "every battery, or one with every field", _V, (0, 1),
            _battery),
    Command("QUEUE ADD", "<ch> <plan> [battery]", "queue a plan; answers the entry id", _O,
            (2, 3), _queue_add),
    Command("QUEUE?", "", "every queue entry: id, ch, plan, battery, status, test", _V, (0, 0),
            _queue),
    Command("QUEUE CANCEL", "<id>", "withdraw a queued entry", _O, (1, 1), _queue_cancel),
    Command("SAMPLES?", "<ch> <n>", "the newest n samples: test, seq, t, U, I, T", _V, (2, 2),
            _samples),
    Command("SUBSCRIBE", "<ch>", "push *SAMPLE lines of the channel", _V, (1, 1), _subscribe),
    Command("UNSUBSCRIBE", "<ch>", "stop them", _V, (1, 1), _unsubscribe),
    Command("AUTH", "<token>", "authenticate; answers the role", None, (1, 1), _auth),
    Command("HELP", "[command]", "the commands, or one's usage", None, (0, 2), _help),
    Command("QUIT", "", "close the connection", None, (0, 0), _quit),
)}

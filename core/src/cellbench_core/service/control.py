"""The station's control API: what interfaces (rci, web) may read and do on a serving station.

Interfaces never reach into the runner or the database themselves: they call
:class:`StationControl`, whose refusals are :class:`ControlError`\\ s with a stable
:class:`ControlErrorKind` each interface maps to its own error codes. Everything runs on the
station's event loop: reads of live state are plain method calls (no awaiting, no locks: the
runner changes its arrays only between awaits), database work is awaited in worker threads.

Control actions (start, stop, pause, resume, next, battery and queue changes) are logged and
stored as ``control`` events with the identity of whoever asked, so a test's event log says who
did what to it.

Live samples: the runner hands every processed batch to :meth:`StationControl._observe`, which
keeps the newest ``ring_size`` samples of every channel in one numpy ring buffer (a vectorised
write per tick, whatever the channel count) and calls the subscribers of the channels in the
batch. A subscriber's callback runs on the event loop inside the runner's tick: it must only
hand the sample on (to a bounded queue, say), never wait.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from cellbench_core.plan import PlanError, load_plan, parse_plan
from cellbench_core.plan.files import PlanFiles
from cellbench_core.plan.yaml_source import read_plan_text
from cellbench_core.runner import (
    ChannelState,
    Refusal,
    RunError,
    Runner,
    SetpointRefused,
    TestRequest,
)
from cellbench_core.storage import BatteryRecord, StorageError
from cellbench_core.storage.queue import QueueEntry, QueueStatus, TestQueue
from cellbench_hal import Step
from cellbench_hal.types import IntArray

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["ChannelInfoView", "ChannelState", "ChannelView", "ControlError", "ControlErrorKind",
           "Interface", "LiveSample", "StationControl", "Subscription"]

#: Samples kept per channel for :meth:`StationControl.last_samples` unless the station says.
DEFAULT_RING_SIZE = 1000

#: Plan names START and QUEUE ADD accept: a file name in the plans folder, no path.
_PLAN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)

#: The ring buffer's fields, in its last axis.
_RING_FIELDS = ("test_id", "seq", "test_time_s", "voltage_v", "current_a", "temperature_c",
                "step_index", "cycle", "ah")


class ControlErrorKind(enum.Enum):
    """Why the station refused a control request (stable: interfaces map these to codes)."""

    NO_SUCH_CHANNEL = "no such channel"
    BUSY = "channel busy"
    IDLE = "channel idle"
    NOT_PAUSED = "not paused"
    PAUSED = "already paused"
    NO_SUCH_PLAN = "no such plan"
    BAD_PLAN = "plan invalid"
    NO_SUCH_BATTERY = "no such battery"
    EXISTS = "already exists"
    NO_SUCH_ENTRY = "no such queue entry"
    NOT_CANCELLABLE = "not cancellable"
    BAD_VALUE = "bad value"
    UNAVAILABLE = "station unavailable"
    NOT_EXTERNAL = "not in an external step"
    DEVICE_ERROR = "device error"


#: The runner's refusals of a setpoint as the control API's.
_REFUSALS = {Refusal.NOT_EXTERNAL: ControlErrorKind.NOT_EXTERNAL,
             Refusal.PAUSED: ControlErrorKind.PAUSED,
             Refusal.OUT_OF_RANGE: ControlErrorKind.BAD_VALUE,
             Refusal.DEVICE: ControlErrorKind.DEVICE_ERROR}


class ControlError(Exception):
    """A refused control request: ``kind`` says why for programs, the message for people.
    Nothing changed."""

    def __init__(self, kind: ControlErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class ChannelInfoView:
    """A channel's number, driver and ranges."""

    number: int
    driver: str
    voltage_min_v: float
    voltage_max_v: float
    current_max_a: float


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel's live state: its latest test (``test_id`` None if it never ran one) and that
    test's battery, the climate chamber the channel is in, and the test's last sample.
    ``ah``/``wh`` count the running step; ``test_time_s`` is since the start."""

    number: int
    state: ChannelState
    test_id: int | None
    step_no: int
    step_text: str
    cycle: int
    voltage_v: float
    current_a: float
    temperature_c: float
    ah: float
    wh: float
    test_time_s: float
    battery: str | None = None
    chamber: str | None = None


@dataclass(frozen=True, slots=True)
class LiveSample:
    """One measured sample of a channel, as kept in the ring buffer and pushed to subscribers."""

    channel: int
    test_id: int
    seq: int
    test_time_s: float
    voltage_v: float
    current_a: float
    temperature_c: float
    step_index: int
    cycle: int
    step_ah: float


class Subscription:
    """A subscriber's registration; :meth:`close` ends it (idempotent)."""

    def __init__(self, control: StationControl, channel: int,
                 callback: Callable[[LiveSample], None]) -> None:
        self.channel, self.callback = channel, callback
        self._control: StationControl | None = control

    def close(self) -> None:
        """Stop the callbacks."""
        if self._control is not None:
            self._control._unsubscribe(self)
            self._control = None


class Interface(Protocol):
    """What an interface plugin's factory returns: the station starts it (once its channels are
    open, before the ready line) and stops it first when shutting down."""

    async def start(self, control: StationControl) -> str:
        """Start serving; return what it serves, for the ready line (e.g. ``rci tcp
        127.0.0.1:5025``). Raise to refuse (the station then does not start)."""

    async def stop(self) -> None:
        """Stop serving and close every connection."""


class StationControl:
    """Reads and controls a serving station: its runner, channels, database and plans folder.

    ``channels`` are the station's channel references (numbered 1..N); ``plans_dir`` is where
    START and QUEUE ADD find plans by name; ``base_dir`` is the station file's folder, against
    which interfaces resolve relative paths in their settings; ``make_request(channel, plan,
    battery)`` makes the test request (the station's attaches its chambers and devices);
    ``files`` is the policy for the files those plans read (by default: only files inside
    ``plans_dir``, and no profile tables).
    """

    def __init__(self, runner: Runner, channels: Sequence[Any], queue: TestQueue, *,
                 name: str, version: str, plans_dir: Path, base_dir: Path,
                 ring_size: int = DEFAULT_RING_SIZE,
                 make_request: Callable[..., TestRequest] = TestRequest,
                 files: PlanFiles | None = None,
                 chambers: Mapping[int, str] | None = None) -> None:
        if ring_size < 1:
            raise ValueError(f"ring_size must be at least 1, not {ring_size}")
        self.runner, self.queue, self.db = runner, queue, queue.db
        self.name, self.version = name, version
        self.plans_dir, self.base_dir = plans_dir, base_dir
        self._channels = list(channels)
        self._make_request = make_request  # the station's: it attaches chambers and devices
        self._files = files or PlanFiles(root=plans_dir)
        self._chambers = dict(chambers or {})
        self.ring_size = ring_size
        n = len(self._channels) + 1  # row 0 unused: rows are channel numbers
        self._ring = np.full((n, ring_size, len(_RING_FIELDS)), np.nan)
        self._written = np.zeros(n, dtype=np.int64)  # samples ever written per channel
        self._subscribers: dict[int, list[Subscription]] = {}
        self._subscribed = np.zeros(n, dtype=bool)
        #: False once the station stops: every change is refused from then on.
        self.available = True
        runner.observer = self._observe

    # ---- channels ----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Changes whenever a channel's view may have changed: views made in the same
        generation are still current."""
        return self.runner.generation

    def channel_numbers(self) -> list[int]:
        """Every channel's number, 1..N."""
        return list(range(1, len(self._channels) + 1))

    def channel_info(self, number: int) -> ChannelInfoView:
        """A channel's driver and ranges."""
        ref = self._ref(number)
        info = ref.info
        return ChannelInfoView(number, ref.driver_name, info.voltage_min_v, info.voltage_max_v,
                               info.current_max_a)

    def channel(self, number: int) -> ChannelView:
        """A channel's live state."""
        self._ref(number)
        state = self.runner.state(number)
        status = self.runner.latest(number)
        chamber = self._chambers.get(number)
        if status is None:
            nan = math.nan
            return ChannelView(number, state, None, 0, "", 0, nan, nan, nan, nan, nan, nan,
                               None, chamber)
        return ChannelView(number, state, status.test_id, status.step_no, status.step,
                           status.cycle, status.voltage_v, status.current_a,
                           status.temperature_c, status.step_ah, status.step_wh,
                           status.test_time_s, status.battery, chamber)

    def channels(self, numbers: Sequence[int]) -> list[ChannelView]:
        """The live state of each of ``numbers``, in that order."""
        return [self.channel(n) for n in numbers]

    def _ref(self, number: int) -> Any:
        if not 1 <= number <= len(self._channels):
            raise ControlError(ControlErrorKind.NO_SUCH_CHANNEL,
                               f"channel {number} does not exist (this station has channels "
                               f"1-{len(self._channels)})")
        return self._channels[number - 1]

    # ---- tests -------------------------------------------------------------------------------

    async def start(self, channel: int, plan_name: str, battery: str | None = None, *,
                    identity: str) -> int:
        """Start the plan ``plan_name`` (a file in the plans folder) on ``channel`` for
        ``battery``; return the test's id. The plan is checked for the channel and battery
        first; on any error nothing starts."""
        self._check_available()
        ref = self._ref(channel)
        self._expect(channel, ChannelState.IDLE)
        path = self._plan_path(plan_name)
        try:
            plan = await asyncio.to_thread(load_plan, path, files=self._files)
            record = None if battery is None else await self._battery(battery)
        except PlanError as err:
            raise ControlError(ControlErrorKind.BAD_PLAN, str(err)) from None
        self._expect(channel, ChannelState.IDLE)  # again: another client may have been quicker
        try:
            test_id = await self.runner.add(self._make_request(ref, plan, record))
        except RunError as err:
            kind = (ControlErrorKind.BUSY if self.runner.state(channel) is not ChannelState.IDLE
                    else ControlErrorKind.BAD_PLAN)
            raise ControlError(kind, str(err)) from None
        except StorageError as err:
            raise ControlError(ControlErrorKind.UNAVAILABLE, str(err)) from None
        self._record(identity, f"START {channel} {plan_name}"
                     f"{'' if battery is None else ' ' + battery}: test {test_id}",
                     channel, test_id)
        return test_id

    def stop(self, channel: int, *, identity: str) -> None:
        """Stop ``channel``'s test at the next sample, output off (it ends as stopped)."""
        self._control(channel, identity, "STOP", (ChannelState.RUNNING, ChannelState.PAUSED))
        self.runner.stop(channel, f"stopped by {identity}")

    def pause(self, channel: int, *, identity: str) -> None:
        """Pause ``channel``'s test: output off, its step time and conditions held."""
        self._control(channel, identity, "PAUSE", (ChannelState.RUNNING,))
        self.runner.pause(channel)

    def resume(self, channel: int, *, identity: str) -> None:
        """Resume ``channel``'s paused test: the step's setpoint is applied again."""
        self._control(channel, identity, "RESUME", (ChannelState.PAUSED,))
        self.runner.resume(channel)

    def next_step(self, channel: int, *, identity: str) -> None:
        """End ``channel``'s current step and go on with its plan."""
        self._control(channel, identity, "NEXT", (ChannelState.RUNNING, ChannelState.PAUSED))
        self.runner.next_step(channel)

    async def set_setpoint(self, channel: int, setpoint: Step, *, identity: str) -> Step:
        """Set ``channel``, running an external step, to ``setpoint`` (a rest, cc, cv or cp
        :class:`~cellbench_hal.Step`) at once and restart the step's watchdog; return the step
        applied. A setpoint beyond the channel's ranges or the test's safety limits (the plan's
        and the battery's) is refused with BAD_VALUE and changes nothing. Every setpoint is
        stored as a ``setpoint`` event with ``identity`` (not as a ``control`` event: that is
        the record of it), and every sample of the step records the setpoint it ran under."""
        self._check_available()
        self._ref(channel)
        self._expect(channel, ChannelState.RUNNING)
        try:
            return await self.runner.set_setpoint(channel, setpoint, identity)
        except SetpointRefused as err:
            raise ControlError(_REFUSALS[err.why], str(err)) from None
        except RunError as err:  # the test ended meanwhile
            raise ControlError(ControlErrorKind.IDLE, str(err)) from None

    def keepalive(self, channel: int, *, identity: str) -> None:
        """Restart the watchdog of ``channel``'s external step without changing its setpoint
        (not recorded: it changes nothing; ``identity`` is for the log of refusals)."""
        self._check_available()
        self._ref(channel)
        self._expect(channel, ChannelState.RUNNING, ChannelState.PAUSED)
        try:
            self.runner.keepalive(channel)
        except SetpointRefused as err:
            log.debug("keepalive by %s refused: %s", identity, err)
            raise ControlError(_REFUSALS[err.why], str(err)) from None

    def _control(self, channel: int, identity: str, command: str,
                 allowed: tuple[ChannelState, ...]) -> None:
        self._check_available()
        self._ref(channel)
        self._expect(channel, *allowed)
        status = self.runner.latest(channel)
        self._record(identity, f"{command} {channel}", channel,
                     None if status is None else status.test_id)

    def _expect(self, channel: int, *allowed: ChannelState) -> None:
        state = self.runner.state(channel)
        if state in allowed:
            return
        if state is ChannelState.IDLE:
            raise ControlError(ControlErrorKind.IDLE, f"channel {channel} runs no test")
        if ChannelState.IDLE in allowed:
            raise ControlError(ControlErrorKind.BUSY, f"channel {channel} is {state.value}")
        if state is ChannelState.PAUSED:
            raise ControlError(ControlErrorKind.PAUSED, f"channel {channel} is already paused")
        raise ControlError(ControlErrorKind.NOT_PAUSED, f"channel {channel} is not paused")

    def _plan_path(self, name: str) -> Path:
        if not _PLAN_NAME.fullmatch(name) or ".." in name:
            raise ControlError(ControlErrorKind.NO_SUCH_PLAN,
                               f"{name!r} is not a plan name (a file name in the plans folder, "
                               "without a path)")
        for candidate in (name, f"{name}.yaml", f"{name}.yml"):
            path = self.plans_dir / candidate
            if path.is_file():
                return path
        raise ControlError(ControlErrorKind.NO_SUCH_PLAN,
                           f"no plan {name!r} in {self.plans_dir}")

    # ---- batteries ---------------------------------------------------------------------------

    async def add_battery(self, name: str, chemistry: str, capacity_ah: float, *,
                          identity: str, **limits: Any) -> None:
        """Register a battery; ``limits`` are the optional keyword arguments of
        :meth:`Database.add_battery` (``voltage_max_v``, ...)."""
        self._check_available()
        try:
            await asyncio.to_thread(self.db.add_battery, name, chemistry, capacity_ah,
                                    **limits)
        except StorageError as err:
            kind = (ControlErrorKind.EXISTS if "already exists" in str(err)
                    else ControlErrorKind.UNAVAILABLE)
            raise ControlError(kind, str(err)) from None
        except ValueError as err:
            raise ControlError(ControlErrorKind.BAD_VALUE, str(err)) from None
        self._record(identity, f"BATTERY ADD {name}", None, None)

    async def edit_battery(self, name: str, changes: Mapping[str, Any], *,
                           identity: str) -> BatteryRecord:
        """Change a registered battery's values (:meth:`Database.update_battery`: the rules
        of registering it); return it as changed."""
        self._check_available()
        try:
            record = await asyncio.to_thread(self.db.update_battery, name, changes)
        except StorageError as err:
            kind = (ControlErrorKind.NO_SUCH_BATTERY if "no battery called" in str(err)
                    else ControlErrorKind.UNAVAILABLE)
            raise ControlError(kind, str(err)) from None
        except ValueError as err:
            raise ControlError(ControlErrorKind.BAD_VALUE, str(err)) from None
        self._record(identity, f"BATTERY EDIT {name}: {', '.join(sorted(changes))}", None,
                     None)
        return record

    async def batteries(self) -> list[BatteryRecord]:
        """Every registered battery, by name."""
        return await self._read(self.db.batteries)

    async def battery(self, name: str) -> BatteryRecord:
        """The battery called ``name``."""
        return await self._battery(name)

    async def _battery(self, name: str) -> BatteryRecord:
        record = await self._read(self.db.battery, name)
        if record is None:
            raise ControlError(ControlErrorKind.NO_SUCH_BATTERY, f"no battery named {name!r}")
        return record

    # ---- the queue ---------------------------------------------------------------------------

    async def queue_add(self, channel: int, plan_name: str, battery: str | None = None, *,
                        identity: str) -> int:
        """Queue the plan ``plan_name`` for ``channel``; return the entry's id. The plan and the
        battery are checked first."""
        self._check_available()
        self._ref(channel)
        path = self._plan_path(plan_name)
        try:  # the text checked is the text queued: the file is read once
            text = await asyncio.to_thread(read_plan_text, path, self._files)
            await asyncio.to_thread(parse_plan, text, str(path), files=self._files)
        except PlanError as err:
            raise ControlError(ControlErrorKind.BAD_PLAN, str(err)) from None
        if battery is not None:
            await self._battery(battery)
        try:
            entry = await asyncio.to_thread(self.queue.add, channel, text,
                                            plan_source=str(path), battery=battery)
        except ValueError as err:
            raise ControlError(ControlErrorKind.BAD_VALUE, str(err)) from None
        except StorageError as err:
            raise ControlError(ControlErrorKind.UNAVAILABLE, str(err)) from None
        self._record(identity, f"QUEUE ADD {channel} {plan_name}: entry {entry}", channel, None)
        return entry

    async def queue_entries(self) -> list[QueueEntry]:
        """Every queue entry, oldest first."""
        return await self._read(self.queue.entries)

    async def queue_cancel(self, entry_id: int, *, identity: str) -> None:
        """Withdraw a queued entry."""
        self._check_available()
        found = await self._read(self.queue.entry, entry_id)
        if found is None:
            raise ControlError(ControlErrorKind.NO_SUCH_ENTRY, f"no queue entry {entry_id}")
        try:
            await asyncio.to_thread(self.queue.cancel, entry_id)
        except StorageError:
            now = await self._read(self.queue.entry, entry_id)
            status = now.status if now is not None else QueueStatus.CANCELLED
            raise ControlError(ControlErrorKind.NOT_CANCELLABLE,
                               f"queue entry {entry_id} is {status}, not queued") from None
        self._record(identity, f"QUEUE CANCEL {entry_id}", found.channel, None)

    async def _read(self, function: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(function, *args)
        except StorageError as err:
            raise ControlError(ControlErrorKind.UNAVAILABLE, str(err)) from None

    # ---- live samples ------------------------------------------------------------------------

    def last_samples(self, channel: int, n: int) -> list[LiveSample]:
        """The newest ``n`` samples of ``channel`` (1 to :attr:`ring_size`), oldest first."""
        self._ref(channel)
        if not 1 <= n <= self.ring_size:
            raise ControlError(ControlErrorKind.BAD_VALUE,
                               f"the number of samples must be 1 to {self.ring_size}, not {n}")
        written = int(self._written[channel])
        count = min(n, written, self.ring_size)
        slots = np.arange(written - count, written) % self.ring_size
        return [_sample(channel, row) for row in self._ring[channel, slots].tolist()]

    def subscribe(self, channel: int, callback: Callable[[LiveSample], None]) -> Subscription:
        """Call ``callback`` with every new sample of ``channel`` until the subscription is
        closed."""
        self._ref(channel)
        subscription = Subscription(self, channel, callback)
        self._subscribers.setdefault(channel, []).append(subscription)
        self._subscribed[channel] = True
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.channel, [])
        if subscription in subscribers:
            subscribers.remove(subscription)
        if not subscribers:
            self._subscribers.pop(subscription.channel, None)
            self._subscribed[subscription.channel] = False

    def _observe(self, channels: IntArray, batch: Any) -> None:
        # Each channel appears at most once per batch (one running test per channel), so one
        # fancy-indexed write stores the whole batch.
        slots = self._written[channels] % self.ring_size
        self._ring[channels, slots] = np.stack(
            [getattr(batch, name) for name in _RING_FIELDS], axis=1)
        self._written[channels] += 1
        if not self._subscribers:
            return
        for position in np.flatnonzero(self._subscribed[channels]).tolist():
            channel = int(channels[position])
            sample = _sample(channel, self._ring[channel, slots[position]].tolist())
            for subscription in list(self._subscribers.get(channel, ())):
                subscription.callback(sample)

    # ---- bookkeeping -------------------------------------------------------------------------

    def _check_available(self) -> None:
        if not self.available:
            raise ControlError(ControlErrorKind.UNAVAILABLE, "the station is stopping")

    def _record(self, identity: str, what: str, channel: int | None,
                test_id: int | None) -> None:
        """Log a control action and store it as an event (through the writer: the event loop
        never waits for the database)."""
        log.info("control by %s: %s", identity, what)
        runner = self.runner
        runner.writer.submit_call(partial(
            self.db.add_event, kind="control", message=f"{identity}: {what}", test_id=test_id,
            channel=None if channel is None else str(channel),
            unix_time_s=runner.clock.unix(runner.clock.now()),
            data={"identity": identity}))


def _sample(channel: int, row: list[float]) -> LiveSample:
    test_id, seq, t, v, i, temp, step_index, cycle, ah = row
    return LiveSample(channel, int(test_id), int(seq), t, v, i, temp, int(step_index),
                      int(cycle), ah)

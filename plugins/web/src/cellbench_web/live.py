"""Live samples and channel states to WebSocket clients.

The hub subscribes once per channel that any client watches (not once per client) and turns
each runner tick's samples into one message, encoded once for every client that watches all
channels; each client then gets it from its own bounded outbox, sent by its own task, so a
slow client loses its oldest messages (counted in the next one as ``dropped``) and never
slows the station or the other clients. Channel states (running, paused, step, cycle) are
checked a few times a second and only the changes are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from cellbench_sdk.control import ChannelView, LiveSample, StationControl, Subscription

#: The fields of a sample row, in order.
SAMPLE_FIELDS = ("channel", "test_id", "seq", "test_time_s", "voltage_v", "current_a",
                 "temperature_c", "step_index", "cycle", "step_ah")
#: Messages a client's outbox holds before the oldest are dropped.
OUTBOX_MESSAGES = 64
#: How often channel states are compared (seconds).
STATE_PERIOD_S = 0.25


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def view_json(view: ChannelView) -> dict[str, Any]:
    """A channel's live state as JSON (NaN as null)."""
    return {"number": view.number, "state": view.state.value, "test_id": view.test_id,
            "step_no": view.step_no, "step_text": view.step_text, "cycle": view.cycle,
            "voltage_v": _number(view.voltage_v), "current_a": _number(view.current_a),
            "temperature_c": _number(view.temperature_c), "ah": _number(view.ah),
            "wh": _number(view.wh), "test_time_s": _number(view.test_time_s),
            "battery": view.battery, "chamber": view.chamber}


def _row(sample: LiveSample) -> list[Any]:
    return [sample.channel, sample.test_id, sample.seq, _number(sample.test_time_s),
            _number(sample.voltage_v), _number(sample.current_a),
            _number(sample.temperature_c), sample.step_index, sample.cycle,
            _number(sample.step_ah)]


class LiveClient:
    """One WebSocket client: the channels it watches (None: all) and its outbox."""

    def __init__(self, channels: frozenset[int] | None,
                 send: Callable[[str], Awaitable[None]]) -> None:
        self.channels = channels
        self._send = send
        self._outbox: deque[str] = deque()
        self._dropped = 0
        self._ready = asyncio.Event()

    def put(self, message: str) -> None:
        """Queue a message; beyond the bound the oldest goes."""
        if len(self._outbox) >= OUTBOX_MESSAGES:
            self._outbox.popleft()
            self._dropped += 1
        self._outbox.append(message)
        self._ready.set()

    async def run(self) -> None:
        """Send the outbox as it fills, until the connection fails or the task is
        cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._outbox:
                if self._dropped:
                    dropped, self._dropped = self._dropped, 0
                    await self._send(json.dumps({"type": "dropped", "count": dropped}))
                await self._send(self._outbox.popleft())


class LiveHub:
    """Fans the station's live samples and channel-state changes out to clients."""

    def __init__(self, control: StationControl) -> None:
        self.control = control
        self.clients: set[LiveClient] = set()
        self._subscriptions: dict[int, tuple[Subscription, int]] = {}  # channel: (sub, users)
        self._tick: list[LiveSample] = []
        self._flush_scheduled = False
        self._states: dict[int, tuple[Any, ...]] = {}
        self._generation = -1
        self._watcher: asyncio.Task[None] | None = None

    def views(self, channels: frozenset[int] | None) -> list[dict[str, Any]]:
        """The live state of ``channels`` (None: all) as JSON."""
        numbers = self.control.channel_numbers() if channels is None else sorted(channels)
        return [view_json(v) for v in self.control.channels(numbers)]

    def add(self, client: LiveClient) -> None:
        """Start sending to ``client``: first the state of its channels."""
        self.clients.add(client)
        wanted = self.control.channel_numbers() if client.channels is None else client.channels
        for channel in wanted:
            subscription, users = self._subscriptions.get(channel, (None, 0))
            if subscription is None:
                subscription = self.control.subscribe(channel, self._collect)
            self._subscriptions[channel] = (subscription, users + 1)
        client.put(json.dumps({"type": "hello", "fields": SAMPLE_FIELDS,
                               "channels": self.views(client.channels)}))
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_states())

    def remove(self, client: LiveClient) -> None:
        """Stop sending to ``client``."""
        if client not in self.clients:
            return
        self.clients.discard(client)
        wanted = self.control.channel_numbers() if client.channels is None else client.channels
        for channel in wanted:
            subscription, users = self._subscriptions[channel]
            if users == 1:
                subscription.close()
                del self._subscriptions[channel]
            else:
                self._subscriptions[channel] = (subscription, users - 1)

    async def close(self) -> None:
        """End the state watcher and every subscription."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for subscription, _ in self._subscriptions.values():
            subscription.close()
        self._subscriptions.clear()
        self.clients.clear()

    def _collect(self, sample: LiveSample) -> None:
        # Runs inside the runner's tick: keep the sample, send once the tick is over.
        self._tick.append(sample)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        samples, self._tick = self._tick, []
        self._flush_scheduled = False
        rows = [_row(s) for s in samples]
        sent_at = time.time()
        everything: str | None = None
        for client in self.clients:
            if client.channels is None:
                if everything is None:
                    everything = orjson.dumps({"type": "samples", "sent_unix_s": sent_at,
                                               "rows": rows}).decode()
                client.put(everything)
                continue
            mine = [row for row in rows if row[0] in client.channels]
            if mine:
                client.put(orjson.dumps({"type": "samples", "sent_unix_s": sent_at,
                                         "rows": mine}).decode())

    async def _watch_states(self) -> None:
        while True:
            await asyncio.sleep(STATE_PERIOD_S)
            generation = self.control.generation
            if generation == self._generation or not self.clients:
                continue
            self._generation = generation
            changed = []
            for view in self.control.channels(self.control.channel_numbers()):
                key = (view.state, view.test_id, view.step_no, view.cycle)
                if self._states.get(view.number) != key:
                    self._states[view.number] = key
                    changed.append(view_json(view))
            if not changed:
                continue
            for client in self.clients:
                mine = changed if client.channels is None else [
                    v for v in changed if v["number"] in client.channels]
                if mine:
                    client.put(json.dumps({"type": "channels", "channels": mine}))

"""One way lifecycle events reach plugins: each plugin on its own, off the event loop.

The runner's tick must never wait for a notifier (a mail server that takes 30 s) nor stop because
one raised. So :meth:`EventDispatcher.fire` only puts the event on a bounded queue and returns;
one worker thread takes events in order and calls every plugin's hookimpl for them separately.
An exception in one plugin is logged and reported to ``on_problem`` (the runner records it as a
``hook_failed`` event of the test); the other plugins still get the event, and the test goes on.

An event no plugin implements is not queued. A full queue (``max_pending`` events waiting:
the plugins are far behind; it holds the starts and first steps of thousands of tests begun at
once) never blocks the caller: the event is dropped and counted, and once the worker catches
up (or at :meth:`close`) it reports how many were dropped as one ``events_dropped`` problem,
with a warning in the log.
:meth:`close` delivers what is queued, waiting at most its timeout; what is left then is
reported as dropped, and a hookimpl still running is left to finish on its own (the thread is a
daemon: it cannot keep the process alive).

Every hookimpl runs on the one worker thread, one call at a time, in the order the events were
fired, so a plugin sees the events of a test in order and needs no locking of its own.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: The event kinds (events.kind in the database) a :class:`Problem` is recorded as.
HOOK_FAILED = "hook_failed"
EVENTS_DROPPED = "events_dropped"


@dataclass(frozen=True)
class Problem:
    """An event a plugin did not take: its hookimpl raised (``kind`` HOOK_FAILED) or the queue
    was full (EVENTS_DROPPED); ``message`` is for people, ``data`` for programs."""

    kind: str
    message: str
    test_id: int | None = None
    channel: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventDispatcher:
    """Delivers lifecycle events fired with :meth:`fire` to the hookimpls of ``hook`` (a pluggy
    hook relay; None: no plugins), each plugin isolated, on one worker thread."""

    def __init__(self, hook: Any = None, *, on_problem: Callable[[Problem], None] | None = None,
                 max_pending: int = 10_000) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self._hook = hook
        self._on_problem = on_problem
        self._queue: queue.Queue[tuple[str, object] | None] = queue.Queue(max_pending)
        self._lock = threading.Lock()
        self._dropped = 0  # since the last report
        self._thread: threading.Thread | None = None
        self._closed = False

    def fire(self, hook_name: str, event: object) -> None:
        """Hand ``event`` to every plugin implementing ``hook_name`` (e.g.
        ``cellbench_test_started``); returns at once, from any thread."""
        if self._hook is None or not getattr(self._hook, hook_name).get_hookimpls():
            return  # no plugin takes it: nothing to queue (a thousand tests start at once)
        with self._lock:
            if self._closed:
                raise RuntimeError("the event dispatcher is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cellbench-events",
                                                daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait((hook_name, event))
            except queue.Full:
                if not self._dropped:
                    log.warning("plugins are behind: %s and later events are dropped until "
                                "they catch up", hook_name)
                self._dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (waiting at most ``timeout_s``) and stop the worker; a later
        :meth:`fire` raises RuntimeError. Safe to call again."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            with contextlib.suppress(queue.Full):  # then the join below times out too
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                left = 0
                while True:  # take what is still queued so the worker stops after its call
                    try:
                        left += self._queue.get_nowait() is not None
                    except queue.Empty:
                        break
                self._queue.put_nowait(None)
                log.warning("plugins did not take every event within %g s", timeout_s)
                with self._lock:
                    self._dropped += left
        self._report_dropped()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._report_dropped()
            try:
                self._deliver(*item)
            except Exception:  # the hook relay itself failed: the worker still serves the rest
                log.exception("event %s could not be delivered", item[0])

    def _deliver(self, hook_name: str, event: object) -> None:
        arguments = {"event": event}
        for impl in reversed(getattr(self._hook, hook_name).get_hookimpls()):  # pluggy's order
            if impl.hookwrapper or impl.wrapper:
                continue  # a wrapper surrounds a call of all plugins, which this never makes
            try:
                impl.function(*(arguments[name] for name in impl.argnames))
            except Exception as err:  # one plugin's fault is its own: the others go on
                log.exception("plugin %s: %s raised", impl.plugin_name, hook_name)
                self._report(Problem(
                    HOOK_FAILED, f"plugin {impl.plugin_name}: {hook_name} raised "
                    f"{type(err).__name__}: {err}", getattr(event, "test_id", None),
                    getattr(event, "channel", None),
                    {"plugin": impl.plugin_name, "hook": hook_name,
                     "error": f"{type(err).__name__}: {err}"}))

    def _report_dropped(self) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("%d events were dropped: plugins fell behind", dropped)
            self._report(Problem(EVENTS_DROPPED, f"{dropped} events did not reach the plugins: "
                                 "they fell behind", data={"dropped": dropped}))

    def _report(self, problem: Problem) -> None:
        if self._on_problem is None:
            return
        try:
            self._on_problem(problem)
        except Exception:  # recording it failed too (the database is gone): the log has it
            log.exception("could not record: %s", problem.message)

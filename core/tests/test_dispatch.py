"""The event dispatcher: plugins isolated from each other and from the caller, a bounded queue."""

from __future__ import annotations

import threading
import time

import pytest

from cellbench_core.dispatch import EVENTS_DROPPED, HOOK_FAILED, EventDispatcher, Problem
from cellbench_core.events import Alarm
from cellbench_core.hookspecs import hookimpl
from cellbench_core.plugins import PluginManager


class Blocked:
    """Holds every alarm until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.got: list[str] = []

    @hookimpl
    def cellbench_alarm(self, event: Alarm) -> None:
        self.entered.set()
        self.release.wait(30.0)
        self.got.append(event.message)


class Broken:
    @hookimpl
    def cellbench_alarm(self, event: Alarm) -> None:
        raise ValueError(f"cannot send {event.message!r}")


def alarm(n: int) -> Alarm:
    return Alarm(channel="3", test_id=7, message=f"alarm {n}")


def test_a_full_queue_drops_and_counts_and_never_blocks() -> None:
    manager = PluginManager()
    blocked = Blocked()
    manager.register("blocked", blocked)
    problems: list[Problem] = []
    events = EventDispatcher(manager.hook, on_problem=problems.append, max_pending=2)
    # Should fire() block, only this timer would free it, and the plugin would then be released.
    rescue = threading.Timer(60.0, blocked.release.set)
    rescue.start()
    events.fire("cellbench_alarm", alarm(0))
    assert blocked.entered.wait(10.0)  # taken and held
    for n in range(1, 10):  # two wait; the rest are dropped
        events.fire("cellbench_alarm", alarm(n))
    assert not blocked.release.is_set()  # every fire() returned while the plugin was held
    rescue.cancel()
    blocked.release.set()
    events.close(timeout_s=10.0)
    assert blocked.got == ["alarm 0", "alarm 1", "alarm 2"]
    assert [(p.kind, p.data) for p in problems] == [(EVENTS_DROPPED, {"dropped": 7})]
    assert problems[0].message == "7 events did not reach the plugins: they fell behind"


def test_a_raising_plugin_is_reported_and_the_others_get_the_event() -> None:
    manager = PluginManager()
    blocked = Blocked()
    blocked.release.set()
    manager.register("broken", Broken())
    manager.register("blocked", blocked)
    problems: list[Problem] = []
    events = EventDispatcher(manager.hook, on_problem=problems.append)
    events.fire("cellbench_alarm", alarm(1))
    events.close()
    assert blocked.got == ["alarm 1"]
    assert problems == [Problem(HOOK_FAILED, "plugin broken: cellbench_alarm raised ValueError: "
                                "cannot send 'alarm 1'", 7, "3",
                                {"plugin": "broken", "hook": "cellbench_alarm",
                                 "error": "ValueError: cannot send 'alarm 1'"})]


def test_close_waits_at_most_its_timeout_for_a_hung_plugin() -> None:
    manager = PluginManager()
    blocked = Blocked()
    manager.register("blocked", blocked)
    problems: list[Problem] = []
    events = EventDispatcher(manager.hook, on_problem=problems.append)
    for n in range(3):
        events.fire("cellbench_alarm", alarm(n))
    assert blocked.entered.wait(10.0)
    rescue = threading.Timer(60.0, blocked.release.set)  # as above: only a broken close waits
    rescue.start()
    began = time.monotonic()
    events.close(timeout_s=0.3)
    assert time.monotonic() - began >= 0.3  # it waited its timeout for the held plugin
    assert not blocked.release.is_set()  # and returned while the plugin still held on
    rescue.cancel()
    assert [p.data for p in problems] == [{"dropped": 2}]  # the held one still runs
    blocked.release.set()
    with pytest.raises(RuntimeError, match="closed"):
        events.fire("cellbench_alarm", alarm(4))


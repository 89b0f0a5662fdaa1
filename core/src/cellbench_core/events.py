"""Lifecycle events: what the runner tells notifiers, sync targets and live consumers.

Events are rare (a test starts, a step changes, a limit trips); samples never travel this way.
They reach plugins through :class:`cellbench_core.dispatch.EventDispatcher`, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TestStatus(StrEnum):
    """Where a test stands; stored in ``tests.status``."""

    RUNNING = "running"
    FINISHED = "finished"  # the plan ran to its end
    STOPPED = "stopped"  # an operator or a safety limit stopped it
    FAILED = "failed"  # a device or the station failed
    INTERRUPTED = "interrupted"  # the station died while it ran

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestStarted:
    """A test began on a channel."""

    test_id: int
    channel: str
    name: str
    plan: str
    battery: str | None
    unix_time_s: float

    __test__ = False


@dataclass(frozen=True)
class StepChanged:
    """A channel moved to another step of its plan."""

    test_id: int
    channel: str
    step_index: int
    plan_line: int
    cycle: int
    text: str
    test_time_s: float


@dataclass(frozen=True)
class TestFinished:
    """A test ended; ``reason`` says why in words an operator understands."""

    test_id: int
    channel: str
    status: TestStatus
    reason: str
    test_time_s: float

    __test__ = False


@dataclass(frozen=True)
class PlanMessage:
    """A plan's message step was reached: ``text`` is for the people watching the test."""

    test_id: int
    channel: str
    plan_line: int
    text: str

    __test__ = False


@dataclass(frozen=True)
class Alarm:
    """Something needs attention: a safety limit tripped, a device stopped answering."""

    channel: str | None
    test_id: int | None
    message: str
    severity: str = "error"

"""The notifier, sync-target and interface checks pass working ones and catch each kind of broken
one with the rule it breaks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cellbench_sdk import Alarm, TestFinished, hookimpl
from cellbench_sdk.control import StationControl
from cellbench_sdk.notify import Notifier
from cellbench_sdk.storage import Database
from cellbench_sdk.sync import ChangeFeed, Positions, SyncReport, SyncTarget, report
from cellbench_sdk.testing import (
    check_interface,
    check_notifier,
    check_sync_target,
    station_control,
)
from cellbench_sync_sqlite.settings import SqliteBackupSettings
from cellbench_sync_sqlite.target import SqliteBackupTarget


class Collects(Notifier):
    def __init__(self) -> None:
        self.seen: list[object] = []
        self.closed = 0

    def alarm(self, event: Alarm) -> None:
        self.seen.append(event)

    def test_finished(self, event: TestFinished) -> None:
        self.seen.append(event)

    async def close(self) -> None:
        self.closed += 1


def test_a_notifier_gets_every_event_on_the_loop_and_is_closed_twice() -> None:
    notifier = Collects()
    asyncio.run(check_notifier(notifier))
    assert [type(e).__name__ for e in notifier.seen] == ["Alarm", "TestFinished"]
    assert notifier.closed == 2


class Raises(Notifier):
    def alarm(self, event: Alarm) -> None:
        raise RuntimeError("mail server down")


class Slow(Notifier):
    def test_finished(self, event: TestFinished) -> None:
        time.sleep(0.05)


class Answers:
    @hookimpl
    def cellbench_alarm(self, event: Alarm) -> str:
        return "sent"


class WrongArgument:
    @hookimpl
    def cellbench_alarm(self, alarm: Alarm) -> None: ...


class Deaf:
    def alarm(self, event: Alarm) -> None: ...


class ClosesOnce(Notifier):
    def __init__(self) -> None:
        self.open = True

    def close(self) -> None:
        if not self.open:
            raise RuntimeError("already closed")
        self.open = False


@pytest.mark.parametrize(("notifier", "fragments"), [
    (Raises(), ["cellbench_alarm(Alarm(...))", "does not raise",
                "raised RuntimeError: mail server down"]),
    (Slow(), ["returns at once", "budget 0.01 s"]),
    (Answers(), ["returns nothing", "['sent']"]),
    (WrongArgument(), ["registration", "alarm"]),
    (Deaf(), ["at least one event hook", "none found"]),
    (ClosesOnce(), ["a second close()", "idempotent", "already closed"]),
], ids=lambda value: type(value).__name__ if not isinstance(value, list) else "")
def test_each_broken_notifier_is_caught(notifier: object, fragments: list[str]) -> None:
    with pytest.raises(AssertionError) as failure:
        asyncio.run(check_notifier(notifier, event_budget_s=0.01))
    assert str(failure.value).startswith(f"notifier {type(notifier).__name__}: ")
    for fragment in fragments:
        assert fragment in str(failure.value)


def test_the_sqlite_backup_passes(tmp_path: Path) -> None:
    check_sync_target(lambda: SqliteBackupTarget(SqliteBackupSettings(path=tmp_path / "b.db")))


class Forgetful(SyncTarget):
    """Holds its positions in memory only: a new target copies everything again."""

    def __init__(self, batch: int = 1_000_000) -> None:
        self.batch = batch
        self.feed: ChangeFeed | None = None

    def open(self) -> None:
        self.feed = ChangeFeed(Positions(), max_rows=self.batch)

    def sync_once(self, local: Database) -> SyncReport:
        assert self.feed is not None
        changes = self.feed.read(local)
        self.feed.advance(changes)
        return report(changes)

    def close(self) -> None:
        self.feed = None


class Repeats(Forgetful):
    def sync_once(self, local: Database) -> SyncReport:
        assert self.feed is not None
        return report(self.feed.read(local))  # never moves on


class Never(Forgetful):
    def sync_once(self, local: Database) -> SyncReport:
        return SyncReport(1, 0, caught_up=False, backlog_age_s=0.0)


class BadReport(Forgetful):
    def sync_once(self, local: Database) -> SyncReport:
        return SyncReport(1, 2, caught_up=True, backlog_age_s=-1.0)


class ClosedTwiceFails(Forgetful):
    def close(self) -> None:
        if self.feed is None:
            raise RuntimeError("not open")
        self.feed = None


@pytest.mark.parametrize(("make", "fragments"), [
    (Forgetful, ["a new target on the same destination", "resumes from the positions"]),
    (Repeats, ["after catching up", "copies nothing more"]),
    (lambda: Never(), ["catches up with a small database", "not caught up after 50 calls"]),
    (BadReport, ["rows >= samples >= 0", "backlog_age_s=-1.0"]),
    (ClosedTwiceFails, ["close() before open()", "raised RuntimeError: not open"]),
    (lambda: object(), ["returns a cellbench_sdk.sync.SyncTarget"]),
], ids=["forgetful", "repeats", "never", "bad report", "close", "not a target"])
def test_each_broken_sync_target_is_caught(make: Callable[[], SyncTarget],
                                           fragments: list[str]) -> None:
    with pytest.raises(AssertionError) as failure:
        check_sync_target(make)
    for fragment in fragments:
        assert fragment in str(failure.value)


class Echo:
    """A working interface: answers every line with its channel count."""

    def __init__(self, served: object = "echo") -> None:
        self.served = served
        self.server: asyncio.Server | None = None

    async def start(self, control: StationControl) -> object:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(f"{len(control.channel_numbers())}\n".encode())
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self.served

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


def test_an_interface_serves_the_kit_station() -> None:
    answers: list[bytes] = []

    async def exercise(interface: object, control: StationControl) -> None:
        assert isinstance(interface, Echo) and interface.server is not None
        port = interface.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"?\n")
        answers.append(await reader.readline())
        writer.close()

    async def run() -> None:
        async with station_control(channels=3) as control:
            await check_interface(Echo(), control, exercise=exercise)

    asyncio.run(run())
    assert answers == [b"3\n"]


class StopFailsBeforeStart(Echo):
    async def stop(self) -> None:
        if self.server is None:
            raise RuntimeError("not started")
        await super().stop()


@pytest.mark.parametrize(("interface", "fragments"), [
    (Echo(""), ["start(control)", "non-empty text", "returned ''"]),
    (StopFailsBeforeStart(), ["stop() before start()", "raised RuntimeError: not started"]),
    (object(), ["async start(control) and async stop()"]),
], ids=["served nothing", "stop before start", "no methods"])
def test_each_broken_interface_is_caught(interface: object, fragments: list[str]) -> None:
    async def run() -> None:
        async with station_control(channels=1) as control:
            await check_interface(interface, control)

    with pytest.raises(AssertionError) as failure:
        asyncio.run(run())
    for fragment in fragments:
        assert fragment in str(failure.value)

"""A serving station: one Runner for all channels, fed from the test queue.

One Runner serves every channel (rather than one Runner per queued test) because a channel
driver measures all of its channels in one call: several runners sharing a driver would split
its sample stream between them. The Runner starts added tests at its next tick.

The station's interfaces (``[[interfaces]]``: rci, web) start once the channels are open and
before the ready line, and stop first on shutdown; they act through :class:`StationControl`.
Its notifiers start just before them, on the station's database (their outbox).

The queue is read every ``queue_poll_interval``; on PostgreSQL a ``LISTEN cellbench_queue``
connection wakes the station at once when a row is inserted. Rows are claimed with a conditional
update, so a row never starts twice. Database calls run in worker threads, never on the event
loop the runner ticks on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, NoReturn

import sqlalchemy as sa

from cellbench_core.events import TestFinished, TestStarted, TestStatus
from cellbench_core.plan import PlanError, parse_plan
from cellbench_core.runner import ChannelState, Prepared, RunError, Runner, prepare
from cellbench_core.service.control import StationControl
from cellbench_core.station import Station, StationError
from cellbench_core.storage import (
    Database,
    SampleWriter,
    StorageError,
    StorageFailure,
    TestEnd,
    TestRecord,
)
from cellbench_core.storage.queue import QueueEntry, QueueStatus, TestQueue
from cellbench_core.storage.records import driver_message, is_storage_fault
from cellbench_hal import Clock

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel that migration 0002's trigger sends on.
NOTIFY_CHANNEL = "cellbench_queue"


class StationService:
    """Serve ``station`` (opened by :meth:`serve`) from the test queue of ``db``."""

    def __init__(self, station: Station, db: Database, clock: Clock, hook: Any,
                 version: str = "") -> None:
        config = station.config.station
        self.station, self.db, self.clock = station, db, clock
        self.queue = TestQueue(db)
        self.poll_interval_s = config.queue_poll_interval
        self.writer = SampleWriter(db, retry_s=config.storage_retry)
        # The runner hands lifecycle events to the plugins through its event dispatcher, and
        # to the service at once (_event): a queued test may end before add() returns its id.
        self.runner = Runner(db, self.writer, clock, sample_period_s=config.sample_period,
                             hooks=hook, station=config.name,
                             device_timeout_s=config.device_timeout, on_event=self._event)
        self._busy: dict[int, int] = {}  # channel number -> queue entry running on it
        self._entry_of_test: dict[int, int] = {}
        self._finished: list[tuple[int, TestFinished]] = []  # (entry, event) to record
        self._wake = asyncio.Event()
        self._stopping = False
        self._queue_faulty_since: float | None = None  # monotonic time of the first fault
        self._version = version
        self.control: StationControl | None = None  # once the channels are open
        self._interfaces: list[Any] = []  # those started
        #: Set once the channels are open and the queue is watched (after the ready line).
        self.ready = asyncio.Event()

    def shutdown(self) -> None:
        """Stop serving: every running test stops (output off), then :meth:`serve` returns."""
        self._stopping = True
        if self.control is not None:
            self.control.available = False
        self.runner.shutdown("station stopped")
        self._wake.set()

    async def serve(self) -> None:
        """Open the channels, end tests a previous run left behind, log the ready line, and
        run queued tests until :meth:`shutdown`; everything is committed when it returns.
        The caller holds the database's station lease (storage/lease.py) meanwhile."""
        try:
            await self.station.open(self.clock)
            runner = asyncio.create_task(self.runner.run([], serve=True))
            await asyncio.sleep(0)  # let it start serving before anything is added
            listener = None
            try:
                await self._recover()
                self.control = StationControl(
                    self.runner, self.station.channels, self.queue,
                    name=self.station.config.station.name, version=self._version,
                    plans_dir=self.station.plans_dir, base_dir=self.station.base_dir,
                    make_request=self.station.request, files=self.station.plan_files,
                    ring_size=self.station.config.station.ring_size,
                    chambers=self.station.chamber_names())
                # Notifiers start with the control API (live samples for MQTT); events fired
                # before (tests resumed above) wait inside them until then.
                await self.station.start_notifiers(self.db, self.control)
                served = await self._start_interfaces(self.control)
                listener = await self._listen()
                self._log_ready(listener is not None, served)
                while not self._stopping and not runner.done():
                    self._wake.clear()  # before reading: a wake-up during the reads counts
                    try:
                        await self._record_finished()
                        await self._pick_up()
                    except StorageFailure as failure:
                        await self._storage_failed(runner, failure)
                    except Exception as err:
                        if not is_storage_fault(err):
                            raise
                        await self._queue_fault(runner, err)
                    else:
                        self._queue_faulty_since = None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                await self._stop_interfaces()  # first: no command may come in meanwhile
                if not runner.done():  # again: a signal may have come before it served
                    self.runner.shutdown("station stopped")
                await runner  # returns once the stopped tests are recorded; raises its errors
            finally:
                await self._stop_interfaces()
                if not runner.done():
                    self.runner.shutdown("station failed")
                    with contextlib.suppress(Exception):
                        await runner
                if listener is not None:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await listener
            await self._record_finished()
        except StorageFailure:
            await self.station.close()
            # The writer's own failure is the one raised, or a part of it.
            with contextlib.suppress(StorageFailure):
                await asyncio.to_thread(self.writer.close)
            raise
        except BaseException:
            await self.station.close()
            await asyncio.to_thread(self.writer.close)
            raise
        await self.station.close()
        await asyncio.to_thread(self.writer.close)

    async def _queue_fault(self, runner: asyncio.Task[Any], err: Exception) -> None:
        """The queue's reads and writes failed on a storage fault: retried at the next round
        (warned once), for up to ``storage_retry``, like the writer's; then the station stops
        as for the writer."""
        retry_s = self.station.config.station.storage_retry
        now = time.monotonic()
        if self._queue_faulty_since is None:
            self._queue_faulty_since = now
            log.warning("the database does not accept the test queue's reads and writes (%s): "
                        "retrying for up to %g s", driver_message(err), retry_s)
        elif now - self._queue_faulty_since >= retry_s:
            await self._storage_failed(runner, StorageFailure(
                f"the database has not accepted the test queue's reads and writes for "
                f"{now - self._queue_faulty_since:.0f} s ({driver_message(err)})"))

    async def _storage_failed(self, runner: asyncio.Task[Any], failure: StorageFailure
                              ) -> NoReturn:
        """The writer gave up on the database: the runner stops every running test safely
        and raises why (with what became of the tests); idle, it has nothing to stop."""
        self.runner.shutdown("the database stopped accepting writes")
        await runner
        raise failure

    def _log_ready(self, notified: bool, served: list[str]) -> None:
        groups = ", ".join(f"{name} x{len(driver.channels)}"
                           for name, driver in self.station.drivers)
        how = "PostgreSQL notifications" if notified else \
            f"polling every {self.poll_interval_s:g} s"
        log.info("station %r ready: %d channels (%s), database %s, test queue by %s, "
                 "interfaces: %s", self.station.config.station.name, len(self.station.channels),
                 groups, sa.make_url(self.db.url).render_as_string(hide_password=True), how,
                 "; ".join(served) or "none")
        self.ready.set()

    async def _start_interfaces(self, control: StationControl) -> list[str]:
        """Start every interface; what each serves, for the ready line. One that fails stops
        those started and the station."""
        served = []
        for n, (kind, interface) in enumerate(self.station.interfaces):
            try:
                served.append(await interface.start(control))
            except Exception as err:
                await self._stop_interfaces()
                raise StationError(f"interfaces[{n}] ({kind}) did not start: {err}") from err
            self._interfaces.append(interface)
        return served

    async def _stop_interfaces(self) -> None:
        if self.control is not None:
            self.control.available = False
        interfaces, self._interfaces = self._interfaces, []
        for interface in reversed(interfaces):
            try:
                await interface.stop()
            except Exception:  # the others and the tests' safe stop come first
                log.exception("an interface did not stop cleanly")

    # ---- the queue ---------------------------------------------------------------------------

    async def _pick_up(self) -> None:
        """Start the oldest queued entry of every free channel: all of them at the next tick
        (each waiting for a tick of its own would take a sample period per test)."""
        entries = await asyncio.to_thread(self.queue.entries, [QueueStatus.QUEUED])
        starting: list[tuple[QueueEntry, asyncio.Future[int]]] = []
        for entry in entries:
            if entry.problem is not None:  # a row no station can run: say why, once
                now = self.clock.unix(self.clock.now())
                if await asyncio.to_thread(self.queue.claim, entry.id, now):
                    log.warning("queue entry %d failed: %s", entry.id, entry.problem)
                    await asyncio.to_thread(self.queue.end, entry.id, QueueStatus.FAILED, now,
                                            entry.problem)
                continue
            if self._stopping or entry.channel in self._busy or (
                    self.runner.state(entry.channel) is not ChannelState.IDLE):
                continue  # its channel runs a queued test, or one an interface started
            if not await asyncio.to_thread(self.queue.claim, entry.id,
                                           self.clock.unix(self.clock.now())):
                continue  # cancelled or claimed elsewhere meanwhile
            self._busy[entry.channel] = entry.id
            try:
                request = await asyncio.to_thread(self._request, entry)
            except (PlanError, RunError, StorageError) as err:
                await self._refuse(entry, err)
                continue
            starting.append((entry, self.runner.add(request)))
        if not starting:
            return
        results = await asyncio.gather(*(f for _, f in starting), return_exceptions=True)
        for (entry, _), result in zip(starting, results, strict=True):
            if isinstance(result, BaseException):
                await self._refuse(entry, result)
                continue
            await asyncio.to_thread(self.queue.started, entry.id, result)
            log.info("queue entry %d: test %d started on channel %d", entry.id, result,
                     entry.channel)

    async def _refuse(self, entry: QueueEntry, err: BaseException) -> None:
        """Mark a claimed entry failed: its test could not start."""
        del self._busy[entry.channel]
        log.warning("queue entry %d failed: %s", entry.id, err)
        await asyncio.to_thread(self.queue.end, entry.id, QueueStatus.FAILED,
                                self.clock.unix(self.clock.now()), str(err))

    def _request(self, entry: QueueEntry) -> Prepared:
        """The test an entry asks for, prepared (in the worker thread this runs in); PlanError,
        RunError or StorageError say what is wrong."""
        channels = self.station.channels
        if not 1 <= entry.channel <= len(channels):
            raise RunError(f"channel {entry.channel} does not exist (this station has channels "
                           f"1-{len(channels)})")
        plan = parse_plan(entry.plan, source=entry.plan_source or f"queue entry {entry.id}",
                          files=self.station.plan_files)
        battery = None
        if entry.battery is not None:
            battery = self.db.battery(entry.battery)
            if battery is None:
                raise StorageError(f"no battery named {entry.battery!r}")
        return prepare(self.station.request(channels[entry.channel - 1], plan, battery,
                                            name=entry.name or ""))

    def _event(self, event: object) -> None:
        if isinstance(event, TestStarted):
            self._started(event)
        elif isinstance(event, TestFinished):
            self._ended(event)

    def _started(self, event: TestStarted) -> None:
        # Called as the runner starts the test, before it can end: a queued test on a fast
        # virtual clock may well end before the runner's add() returns its id.
        entry = self._busy.get(int(event.channel))
        if entry is not None:
            self._entry_of_test[event.test_id] = entry

    def _ended(self, event: TestFinished) -> None:
        entry = self._entry_of_test.pop(event.test_id, None)
        if entry is None:
            return
        self._busy.pop(int(event.channel), None)
        self._finished.append((entry, event))
        self._wake.set()

    async def _record_finished(self) -> None:
        """Mark the entries whose tests ended, once the tests' ends are committed."""
        if not self._finished:
            return
        finished, self._finished = self._finished, []
        await asyncio.to_thread(self.writer.flush)
        for entry, event in finished:
            error = None if event.status is TestStatus.FINISHED else event.reason
            await asyncio.to_thread(self.queue.end, entry, QueueStatus(event.status.value),
                                    self.clock.unix(self.clock.now()), error)
            log.info("queue entry %d: test %d %s (%s)", entry, event.test_id,
                     event.status.value, event.reason)

    # ---- after a crash -----------------------------------------------------------------------

    async def _recover(self) -> None:
        """Resume (``on_restart = "resume"``) or end the tests that were running when this
        station last died, and their queue entries."""
        interrupted, entries = await asyncio.to_thread(self._interrupted)
        resume = self.station.config.station.on_restart == "resume"
        if resume and interrupted:  # time stamps go on from the last stored, never back
            last = await asyncio.to_thread(self.db.last_sample_unix, [t.id for t in interrupted])
            if last is not None:
                self.clock.continue_after(last)
        resuming: list[tuple[TestRecord, QueueEntry | None, asyncio.Future[int]]] = []
        for test in interrupted:
            await asyncio.to_thread(self._record_opening_writes, test)
            entry = entries.pop(test.id, None)
            reason = "interrupted: the station stopped while the test ran"
            if resume:
                try:
                    request = await asyncio.to_thread(self._resume_request, test)
                except (PlanError, RunError, StorageError, ValueError) as err:
                    reason = f"interrupted, and it could not resume: {err}"
                else:
                    if entry is not None:
                        self._busy[request.request.channel.number] = entry.id
                        self._entry_of_test[test.id] = entry.id
                    resuming.append((test, entry, self.runner.add(request)))
                    continue
            await asyncio.to_thread(self._end_interrupted, test.id, entry, reason)
        results = await asyncio.gather(*(f for _, _, f in resuming), return_exceptions=True)
        for (test, entry, _), result in zip(resuming, results, strict=True):
            if isinstance(result, BaseException):
                if entry is not None:
                    self._busy.pop(entry.channel, None)
                    self._entry_of_test.pop(test.id, None)
                await asyncio.to_thread(self._end_interrupted, test.id, entry,
                                        f"interrupted, and it could not resume: {result}")
        for entry in entries.values():  # claimed, and the station died before the test began
            await asyncio.to_thread(self._end_interrupted, None, entry,
                                    "interrupted: the station stopped before the test began")

    def _record_opening_writes(self, test: TestRecord) -> None:
        """Record, with a test the crash interrupted, the ``on_stop`` values the station wrote
        to its channel's devices as it opened (``device_write`` events)."""
        number = int(test.channel) if test.channel.isdigit() else 0
        for name, _ in self.station.devices_of(number):
            for signal, value in self.station.opening_writes.get(name, {}).items():
                self.db.add_event(kind="device_write", test_id=test.id, channel=test.channel,
                                  message=f"{name}.{signal} = {value:g} (on_stop, as the "
                                          "station opened after the crash)",
                                  unix_time_s=self.clock.unix(self.clock.now()),
                                  data={"signal": f"{name}.{signal}", "value": value,
                                        "source": "on_stop"})

    def _interrupted(self) -> tuple[list[TestRecord], dict[int, QueueEntry]]:
        """This station's tests still marked running, and the running queue entries by test."""
        name = self.station.config.station.name
        tests = self.db.tests(station=name, status=TestStatus.RUNNING)
        entries: dict[int, QueueEntry] = {  # claimed entries without a test by -id
            e.test_id if e.test_id is not None else -e.id: e
            for e in self.queue.entries([QueueStatus.RUNNING])}
        return tests, entries

    def _resume_request(self, test: TestRecord) -> Prepared:
        """The request that resumes ``test``, prepared (in the worker thread this runs in); an
        error says why it cannot."""
        channels = self.station.channels
        number = int(test.channel) if test.channel.isdigit() else 0
        if not 1 <= number <= len(channels):
            raise RunError(f"its channel {test.channel!r} is not on this station any more")
        point = Runner.resume_point(self.db, test.id, self.clock.unix(self.clock.now()))
        if point is None:
            raise RunError("it committed no plan position")
        plan = parse_plan(test.plan_text, source=test.plan_source, files=self.station.plan_files)
        battery = None
        if test.battery is not None:
            battery = self.db.battery(test.battery)
            if battery is None:
                raise StorageError(f"its battery {test.battery!r} is not registered any more")
        return prepare(self.station.request(channels[number - 1], plan, battery,
                                            name=test.name, resume=point))

    def _end_interrupted(self, test_id: int | None, entry: QueueEntry | None,
                         reason: str) -> None:
        now = self.clock.unix(self.clock.now())
        if test_id is not None:
            self.db.finish_tests([TestEnd(test_id, TestStatus.INTERRUPTED.value, reason, now)])
        if entry is not None:
            self.queue.end(entry.id, QueueStatus.INTERRUPTED, now, reason)
        log.warning("test %s (queue entry %s): %s", test_id,
                    None if entry is None else entry.id, reason)

    async def _listen(self) -> asyncio.Task[None] | None:
        """On PostgreSQL, a task that wakes the queue loop on every insert; else None."""
        url = sa.make_url(self.db.url)
        if url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg":
            return None
        import psycopg

        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")

        async def listen() -> None:
            try:
                async for _ in connection.notifies():
                    self._wake.set()
            finally:
                await connection.close()

        return asyncio.create_task(listen())

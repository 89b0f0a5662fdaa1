"""The sync targets a serving station runs itself (``[[sync]]`` in the station file).

Each target runs :func:`~cellbench_core.synctargets.run_sync` in its own thread: it reads only
committed rows through its own connections, so the runner's event loop never waits for it, and a
target that is slow or unreachable holds up nothing but itself. The threads are daemons: what a
target had not copied when the process ends follows on its next start, so none keeps the process
alive.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cellbench_core.descriptors import Kind
from cellbench_core.dispatch import EventDispatcher
from cellbench_core.events import Alarm
from cellbench_core.plugins import PluginError, PluginManager
from cellbench_core.station import StationConfig, StationError, SyncSection, invalid
from cellbench_core.storage import Database
from cellbench_core.synctargets import SyncTarget, run_sync

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Worker:
    name: str
    target: SyncTarget
    section: SyncSection
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class SyncWorkers:
    """The ``[[sync]]`` targets of a station, built (and their settings validated) at once,
    run by :meth:`start` until :meth:`stop`."""

    def __init__(self, config: StationConfig, plugins: PluginManager, hook: Any) -> None:
        """Build every target; StationError names the bad key, like ``sync[0].settings.url``."""
        self._events = EventDispatcher(hook)  # closed by stop()
        self._workers: list[_Worker] = []
        for n, section in enumerate(config.sync):
            try:
                descriptor = plugins.registry.get(Kind.SYNC_TARGET, section.target)
            except PluginError as err:
                raise StationError(f"{config.where(('sync', n, 'target'))}: {err}") from None
            settings = dict(section.settings)
            if "station" in descriptor.settings.model_fields:
                settings.setdefault("station", config.station.name)
            try:
                target = descriptor.create(settings)
            except ValidationError as err:
                raise invalid(err, descriptor.settings, config, ("sync", n, "settings")) from None
            self._workers.append(_Worker(f"{section.target} (sync[{n}])", target, section))

    def __len__(self) -> int:
        return len(self._workers)

    def start(self, local: Database) -> None:
        """Start every target in its own thread, copying ``local`` continuously."""
        for worker in self._workers:
            worker.thread = threading.Thread(
                target=self._run, args=(worker, local, False), name=f"sync {worker.name}",
                daemon=True)
            worker.thread.start()
            log.info("sync target %s started", worker.name)

    def stop(self, local: Database) -> None:
        """Stop every target, then let each copy what is still missing once (when ``local``
        holds everything the station will write); a target that fails then logs why and its
        rows follow on the next start."""
        for worker in self._workers:
            worker.stop.set()
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join()
                worker.thread = None
        finals = [threading.Thread(target=self._run, args=(worker, local, True),
                                   name=f"final sync {worker.name}", daemon=True)
                  for worker in self._workers]
        for thread in finals:
            thread.start()
        for thread in finals:
            thread.join()
        self._events.close()

    def _run(self, worker: _Worker, local: Database, final: bool) -> None:
        section = worker.section
        try:
            run_sync(worker.target, local, name=worker.name, interval_s=section.interval,
                     alarm_after_s=section.alarm_after, once=final,
                     stop=None if final else worker.stop, on_alarm=self._alarm)
        except Exception as err:  # a thread has no caller to raise to: say what went wrong
            log.error("sync target %s failed%s: %s", worker.name,
                      " in its final sync (the rest follows on the next start)" if final else "",
                      err)
        else:
            if final:
                log.info("sync target %s holds everything committed", worker.name)

    def _alarm(self, message: str) -> None:
        self._events.fire("cellbench_alarm", Alarm(channel=None, test_id=None, message=message))

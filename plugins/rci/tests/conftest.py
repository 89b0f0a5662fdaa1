"""What the rci tests share: the ``rci`` command as the plugin registers it on the
``cellbench`` command line, and a real serving station with rci in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import Database, open_database
from cellbench_hal import VirtualClock
from cellbench_rci.cli import register
from cellbench_rci.client import RciClient
from cellbench_rci.interface import RciInterface

PATIENCE_S = 30.0


class Running:
    """A serving station in a thread of its own, with its rci interface."""

    def __init__(self, service: StationService, interface: RciInterface) -> None:
        self.service, self.interface = service, interface
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            task = asyncio.create_task(self.service.serve())
            waiter = asyncio.create_task(self.service.ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                await task  # it failed to start: raises
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as err:  # shown by the test that started it
            self.error = err
        finally:
            self._ready.set()

    def __enter__(self) -> Running:
        self._thread.start()
        assert self._ready.wait(PATIENCE_S)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *_: object) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.service.shutdown)
        self._thread.join(PATIENCE_S)
        assert not self._thread.is_alive()

    @property
    def port(self) -> int:
        assert self.interface.address is not None
        return self.interface.address[1]

    def client(self, **options: Any) -> RciClient:
        return RciClient.connect("127.0.0.1", self.port, timeout=PATIENCE_S, **options)

    def control_events(self, test_id: int) -> list[str]:
        """The messages of the test's control events, once committed."""
        self.service.writer.flush(PATIENCE_S)
        return [e.message for e in self.service.db.events(test_id) if e.kind == "control"]

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the station's loop (between its ticks) and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(PATIENCE_S)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'rci.db'}")
    yield database
    database.close()


@pytest.fixture
def serve(db: Database, station_dir: Path) -> Callable[..., Running]:
    """``serve(speed=..., sim=..., **rci_settings)``: a station with 4 simulated channels
    (``sim``: settings of their bank beyond the count and seed) and rci, on a virtual clock
    ``speed`` times faster than real time, for the plans in ``station_dir``."""

    def make(speed: float | None = 50.0, sim: dict[str, Any] | None = None,
             **options: Any) -> Running:
        settings = {"tcp": "127.0.0.1:0", **options}
        config = station_from_dict({
            "station": {"name": "rig", "database": db.url, "sample_period": "1 s",
                        "queue_poll_interval": "0.05 s", "ring_size": 50},
            "channels": [{"driver": "sim", "settings": {"count": 4, "seed": 2, **(sim or {})}}],
            "interfaces": [{"kind": "rci", "settings": settings}],
        })
        manager = PluginManager()
        manager.load()
        station = Station(config, manager, base_dir=station_dir)
        interface = station.interfaces[0][1]
        service = StationService(station, db, VirtualClock(speed), manager.hook, version="1.2.3")
        return Running(service, interface)

    return make




@pytest.fixture
def app() -> typer.Typer:
    """A command line holding ``rci`` as the plugin registers it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """cellbench"""

    register(app)
    return app

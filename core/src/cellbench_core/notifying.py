"""What the station hands its notifiers when it starts them: their name, the station, its
database (for their outbox), and a way to raise an alarm of their own.

The station builds a notifier from its settings alone; once it has its database open it calls
the notifier's ``start(context)``, if it has one (cellbench_sdk.notify.OutboxNotifier does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cellbench_core.storage import Database

if TYPE_CHECKING:  # the control API imports the runner, which a notifier never needs
    from cellbench_core.service.control import StationControl


@dataclass(frozen=True)
class NotifierContext:
    """A started notifier's surroundings.

    ``name`` is the notifier's name in the station (its ``[[notifiers]]`` name, by default its
    kind), unique among the station's notifiers: its outbox is kept under it. ``base_dir`` is
    the station file's folder, against which relative paths in its settings are read.
    ``raise_alarm(message)`` records an alarm event of the station and hands it to every
    notifier (one whose messages cannot be delivered says so through the others). ``control``
    is the serving station's control API (live samples, channel states), or None when the
    station runs tests from the command line or sends a test message.
    """

    name: str
    station: str
    database: Database
    base_dir: Path
    raise_alarm: Callable[[str], None]
    control: StationControl | None = None

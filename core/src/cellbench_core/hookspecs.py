# mypy: disable-error-code="empty-body"
"""The plugin contract: every hook cellbench calls, one documented function each.

Plugins implement these with ``@cellbench_sdk.hookimpl``. Registration hooks return
:class:`~cellbench_core.descriptors.Descriptor` lists; the core fills its registries from them once
at startup and reads the registries afterwards. Lifecycle hooks are called on events, never per
sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from cellbench_core.descriptors import Descriptor
    from cellbench_core.events import Alarm, PlanMessage, StepChanged, TestFinished, TestStarted

PROJECT = "cellbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def cellbench_channel_drivers() -> list[Descriptor]:
    """Return descriptors of the channel drivers (cycler channel banks) this plugin provides."""


@hookspec
def cellbench_osi_devices() -> list[Descriptor]:
    """Return descriptors of the OSI devices (CAN, SMBus, loggers, lookup tables) it provides."""


@hookspec
def cellbench_climate_chambers() -> list[Descriptor]:
    """Return descriptors of the climate chambers this plugin drives."""


@hookspec
def cellbench_sync_targets() -> list[Descriptor]:
    """Return descriptors of sync targets (central SQL server, backup file, file exports)."""


@hookspec
def cellbench_notifiers() -> list[Descriptor]:
    """Return descriptors of notifiers (mail, MQTT, webhook) that receive events and messages."""


@hookspec
def cellbench_interfaces() -> list[Descriptor]:
    """Return descriptors of control interfaces (remote control, web) a station can serve."""


@hookspec
def cellbench_plan_steps() -> list[Descriptor]:
    """Return descriptors of additional plan-step kinds this plugin understands."""


@hookspec
def cellbench_cli(app: typer.Typer) -> None:
    """Add commands (or command groups) to the ``cellbench`` command line."""


@hookspec
def cellbench_test_started(event: TestStarted) -> None:
    """A test started on a channel."""


@hookspec
def cellbench_step_changed(event: StepChanged) -> None:
    """A channel moved to another step of its plan."""


@hookspec
def cellbench_test_finished(event: TestFinished) -> None:
    """A test ended (finished, stopped, failed or interrupted)."""


@hookspec
def cellbench_message(event: PlanMessage) -> None:
    """A test reached a message step of its plan; notifiers pass the text on."""


@hookspec
def cellbench_alarm(event: Alarm) -> None:
    """A safety limit tripped or a device failed."""

# mypy: disable-error-code="empty-body"
"""The plugin contract: every hook cellbench calls, one documented function each.

Plugins implement these with ``@cellbench_sdk.hookimpl``, under the same name and with the same
(or fewer) arguments; a misspelt hook or an unknown argument is refused when the plugin loads.
There are three families:

Registration hooks (``cellbench_channel_drivers`` ... ``cellbench_export_formats``)
    Called once per process, when the plugin loads (:func:`~cellbench_core.plugins.loaded_plugins`),
    on the main thread, before any event loop runs. Each returns a list of
    :class:`~cellbench_core.descriptors.Descriptor` of its own kind only (a descriptor is data: the
    implementation is imported when a station uses it). The core fills its registry from them
    and reads only the registry afterwards. They must not block (no I/O, no hardware) and should
    not raise: a plugin whose registration hook raises, returns something that is not a
    descriptor of the hook's kind, or offers a name another plugin already offers, is reported
    ``failed`` with the reason by ``cellbench plugins`` and leaves nothing registered; the other
    plugins load as usual.

``cellbench_cli``
    Called once, when the ``cellbench`` command starts, on the main thread.

Event hooks (``cellbench_test_started`` ... ``cellbench_alarm``)
    Called when something happens to a test, never per sample, with a frozen event dataclass.
    They return nothing. An exception is logged and recorded as an event of the test; the test
    keeps running and the other plugins still get the event. The hook runs on a worker thread,
    off the event loop (:class:`~cellbench_core.dispatch.EventDispatcher`), so it may block
    briefly but should not: the events behind it wait, and when too many wait some are dropped
    (and that is recorded). Calls come one at a time, in the order the events happened, so a
    plugin needs no locking of its own. A notifier object that a
    station builds from its ``[[notifiers]]`` section implements these as methods; the station
    registers it, so it is called like a plugin's hook.

Plan steps are not a hook: the plan language is a closed grammar that the parser checks in full
(every step form, unit and condition), so a plan means the same on every station. Steps that
depend on a device reach it through the devices and chambers a station attaches, by name.
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
    """Return descriptors of the channel drivers (cycler channel banks) this plugin provides.

    Registration hook: called once when the plugin loads, on the main thread; must not block.
    Return only ``Kind.CHANNEL_DRIVER`` descriptors, each naming a factory that builds a
    ``ChannelDriver`` from its validated settings (no connection yet: drivers connect in
    ``open``). Raising, or returning anything else, marks the plugin failed.

    Example::

        @hookimpl
        def cellbench_channel_drivers() -> list[Descriptor]:
            return [Descriptor(Kind.CHANNEL_DRIVER, "acme-bc4", "acme_bc4.driver:Bc4Driver",
                               "ACME BC4 cycler, 8 channels over TCP", Bc4Settings)]
    """


@hookspec
def cellbench_osi_devices() -> list[Descriptor]:
    """Return descriptors of the OSI devices (CAN, SMBus, loggers, lookup tables) it provides.

    Registration hook: called once when the plugin loads, on the main thread; must not block.
    Return only ``Kind.OSI_DEVICE`` descriptors; each factory builds an ``OsiDevice`` from its
    settings. Raising, or returning anything else, marks the plugin failed. The device named
    ``lookup`` also reads the tables of profile steps (:mod:`cellbench_core.plan.tables`).

    Example::

        @hookimpl
        def cellbench_osi_devices() -> list[Descriptor]:
            return [Descriptor(Kind.OSI_DEVICE, "acme-logger", "acme.logger:Logger",
                               "ACME 16-channel temperature logger", LoggerSettings)]
    """


@hookspec
def cellbench_climate_chambers() -> list[Descriptor]:
    """Return descriptors of the climate chambers this plugin drives.

    Registration hook: called once when the plugin loads, on the main thread; must not block.
    Return only ``Kind.CLIMATE_CHAMBER`` descriptors; each factory builds a ``ClimateChamber``.
    Raising, or returning anything else, marks the plugin failed.

    Example::

        @hookimpl
        def cellbench_climate_chambers() -> list[Descriptor]:
            return [Descriptor(Kind.CLIMATE_CHAMBER, "acme-tc", "acme.chamber:Chamber",
                               "ACME TC-100 chamber over Modbus TCP", ChamberSettings)]
    """


@hookspec
def cellbench_sync_targets() -> list[Descriptor]:
    """Return descriptors of sync targets (central SQL server, backup file, file exports).

    Registration hook: called once when the plugin loads, on the main thread; must not block.
    Return only ``Kind.SYNC_TARGET`` descriptors; each factory builds a sync target from its
    settings (``cellbench sync --target NAME`` and a station's ``[[sync]]`` sections use them).
    Raising, or returning anything else, marks the plugin failed.

    Example::

        @hookimpl
        def cellbench_sync_targets() -> list[Descriptor]:
            return [Descriptor(Kind.SYNC_TARGET, "parquet", "acme.parquet:ParquetTarget",
                               "Copy every test to Parquet files", ParquetSettings)]
    """


@hookspec
def cellbench_notifiers() -> list[Descriptor]:
    """Return descriptors of notifiers (mail, MQTT, webhook) that receive events and messages.

    Registration hook: called once when the plugin loads, on the main thread; must not block.
    Return only ``Kind.NOTIFIER`` descriptors; each factory builds an object whose ``@hookimpl``
    methods are event hooks (and that may have a ``close()``). Raising, or returning anything
    else, marks the plugin failed.

    Example::

        @hookimpl
        def cellbench_notifiers() -> list[Descriptor]:
            return [Descriptor(Kind.NOTIFIER, "mail", "acme.mail:MailNotifier",
                               "Mail when a test ends or an alarm trips", MailSettings)]
    """


@hookspec
def cellbench_interfaces() -> list[Descriptor]:
    """Return descriptors of control interfaces (remote control, web) a station can serve.

    Registration hook: called once when the plugin loads, on the main thread; must not block.
    Return only ``Kind.INTERFACE`` descriptors; each factory builds an object with
    ``async start(control) -> str`` and ``async stop()``, which a serving station calls on its
    event loop. Raising, or returning anything else, marks the plugin failed.

    Example::

        @hookimpl
        def cellbench_interfaces() -> list[Descriptor]:
            return [Descriptor(Kind.INTERFACE, "web", "acme.web:WebInterface",
                               "Browser view of the station", WebSettings)]
    """


@hookspec
def cellbench_export_formats() -> list[Descriptor]:
    """Return descriptors of the file formats a test can be downloaded in (web, API).

    Registration hook: called once when the plugin loads, on the main thread; must not block.
    Return only ``Kind.EXPORT_FORMAT`` descriptors; each factory builds a
    :class:`cellbench_sdk.export.ExportFormat`: a file suffix, a media type and ``encode(test,
    aux, chunks)``, which turns a test's record and its sample chunks into the file's bytes a
    piece at a time (a download streams them, never holding the whole test). Raising, or
    returning anything else, marks the plugin failed.

    Example::

        @hookimpl
        def cellbench_export_formats() -> list[Descriptor]:
            return [Descriptor(Kind.EXPORT_FORMAT, "acme-csv", "acme.export:AcmeCsv",
                               "ACME's CSV layout")]
    """


@hookspec
def cellbench_cli(app: typer.Typer) -> None:
    """Add commands (or command groups) to the ``cellbench`` command line.

    Called once when the ``cellbench`` command starts, on the main thread, before the command
    line is parsed; return nothing. It must not block. If it raises, ``cellbench`` stops with
    the error, so add commands and do nothing else here: the work belongs in the commands.

    Example::

        @hookimpl
        def cellbench_cli(app: typer.Typer) -> None:
            @app.command("acme-calibrate")
            def calibrate(channel: int) -> None:
                '''Calibrate one ACME channel.'''
    """


@hookspec
def cellbench_test_started(event: TestStarted) -> None:
    """A test started on a channel.

    Event hook: called once per test as it starts, with its id (not again when a station resumes
    it after a crash); return nothing. An exception is logged and recorded as an event of the
    test; the hook runs on a worker thread, off the event loop, so it may block briefly but
    should not.

    Example::

        @hookimpl
        def cellbench_test_started(self, event: TestStarted) -> None:
            self.outbox.put(f"test {event.test_id} started on channel {event.channel}")
    """


@hookspec
def cellbench_step_changed(event: StepChanged) -> None:
    """A channel moved to another step of its plan.

    Event hook: called at every step change of a test (never per sample); return nothing. An
    exception is logged and recorded as an event of the test; the hook runs on a worker thread,
    off the event loop, so it may block briefly but should not.

    Example::

        @hookimpl
        def cellbench_step_changed(self, event: StepChanged) -> None:
            self.outbox.put(f"channel {event.channel}: step {event.step_index} {event.text}")
    """


@hookspec
def cellbench_test_finished(event: TestFinished) -> None:
    """A test ended (finished, stopped, failed or interrupted).

    Event hook: called once per test, when it ends; return nothing. An exception is logged and
    recorded as an event of the test; the hook runs on a worker thread, off the event loop, so
    it may block briefly but should not.

    Example::

        @hookimpl
        def cellbench_test_finished(self, event: TestFinished) -> None:
            self.outbox.put(f"test {event.test_id} {event.status}: {event.reason}")
    """


@hookspec
def cellbench_message(event: PlanMessage) -> None:
    """A test reached a message step of its plan; notifiers pass the text on.

    Event hook: called once each time a test passes a message step; return nothing. An
    exception is logged and recorded as an event of the test; the hook runs on a worker thread,
    off the event loop, so it may block briefly but should not.

    Example::

        @hookimpl
        def cellbench_message(self, event: PlanMessage) -> None:
            self.outbox.put(f"channel {event.channel}: {event.text}")
    """


@hookspec
def cellbench_alarm(event: Alarm) -> None:
    """A safety limit tripped, a device failed, or a sync target fell behind.

    Event hook: called once per alarm; ``event.test_id`` and ``event.channel`` are ``None`` for
    an alarm of the station (a sync target). Return nothing. An exception is logged and
    recorded as an event of the test (only logged for an alarm of the station); the hook runs
    on a worker thread, off the event loop, so it may block briefly but should not.

    Example::

        @hookimpl
        def cellbench_alarm(self, event: Alarm) -> None:
            self.outbox.put(f"ALARM channel {event.channel}: {event.message}")
    """

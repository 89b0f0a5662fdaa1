"""The station: its TOML configuration, and the channel drivers it builds from the plugins.

A station file names the database, the sample period, which plugins to enable or disable, and
groups of channels, each group one channel driver with its settings. Channels are numbered from 1
across the whole station in file order.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import pluggy
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from cellbench_core.descriptors import Kind
from cellbench_core.dispatch import EventDispatcher, Problem
from cellbench_core.events import Alarm
from cellbench_core.notifying import NotifierContext
from cellbench_core.plan import Plan
from cellbench_core.plan.files import PlanFiles
from cellbench_core.plan.tables import TableLoader, lookup_tables
from cellbench_core.plan.yaml_source import did_you_mean
from cellbench_core.plugins import PluginError, PluginManager
from cellbench_core.runner import ChannelRef, Resume, TestRequest
from cellbench_core.runner.resolve import check_writable
from cellbench_core.storage import BatteryRecord, Database
from cellbench_core.storage.urls import checked_url
from cellbench_core.text import check_identifier
from cellbench_core.tomlkeys import KeyPath, key_lines, line_of
from cellbench_core.units import parse_duration
from cellbench_hal import (
    ChannelDriver,
    ClimateChamber,
    Clock,
    Device,
    DeviceError,
    OsiDevice,
    RealClock,
    VirtualClock,
    call_with_timeout,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the control API imports the station's runner
    from cellbench_core.service.control import StationControl


class StationError(ValueError):
    """The station file or a channel selection is invalid; the message names the key."""


#: A number that is neither NaN nor infinite (TOML has both).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("expected a duration with its unit, like '1 s' or '100 ms'")
    return parse_duration(value)


#: A duration a person writes with its unit ('5 s', '2 min'), held in seconds.
Duration = Annotated[float, BeforeValidator(_duration)]


def _database_url(url: str) -> str:
    checked_url(url)  # the check every opener of a database makes, at load time here
    return url


class StationSection(_Strict):
    """``[station]``: identity, database, timing, and how ``cellbench serve`` runs."""

    name: str = "station"
    database: Annotated[str, AfterValidator(_database_url)] = "sqlite:///cellbench.db"
    sample_period: Duration = Field(default=1.0, description="e.g. '1 s', '100 ms'")
    device_timeout: Duration = Field(default=5.0, description="e.g. '5 s'")
    storage_retry: Duration = Field(
        default=60.0, description="how long writes the database does not accept are retried "
                                  "before every test stops (e.g. '60 s')")
    clock: Literal["real", "virtual"] = "real"
    speed: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                description="virtual clock: times faster than the wall")
    queue_poll_interval: Duration = Field(default=0.5, description="e.g. '0.5 s'")
    on_restart: Literal["end", "resume"] = Field(
        default="end", description="what `serve` does with the tests a crash interrupted")
    plans_dir: str = Field(default="plans", min_length=1,
                           description="where interfaces find plans by name; relative to the "
                                       "station file's folder")
    ring_size: int = Field(default=1000, ge=1, le=100_000,
                           description="newest samples kept in memory per channel for "
                                       "interfaces")

    @field_validator("name")
    @classmethod
    def _name_is_an_identifier(cls, value: str) -> str:
        return check_identifier(value, "the station's name")

    @model_validator(mode="after")
    def _speed_needs_virtual_clock(self) -> StationSection:
        if self.speed is not None and self.clock != "virtual":
            raise AtKey(("speed",), "speed applies to clock = \"virtual\" only")
        return self

    def make_clock(self) -> Clock:
        """The clock this station runs on: the wall clock, or simulated time."""
        return RealClock() if self.clock == "real" else VirtualClock(self.speed)


class PluginsSection(_Strict):
    """``[plugins]``: ``enable`` lists plugins that must load; ``disable`` those not to load."""

    enable: list[str] = []
    disable: list[str] = []


class ChannelGroup(_Strict):
    """``[[channels]]``: one channel driver and its settings (validated by the driver)."""

    driver: str
    settings: dict[str, Any] = {}


class SyncSection(_Strict):
    """``[[sync]]``: a sync target ``cellbench serve`` runs beside the station (docs/sync.md);
    its settings are validated by the target."""

    target: str
    settings: dict[str, Any] = {}
    interval: Duration = Field(default=0.5, description="between batches once caught up, e.g. "
                                                     "'0.5 s'")
    alarm_after: Duration = Field(default=300.0, description="alarm when not caught up this "
                                                          "long, e.g. '5 min'")


class AttachedSection(_Strict):
    """A device attached to some of the station's channels: its kind (a plugin's name for it),
    its name in the station (which prefixes its signals), which channels it serves, and its
    settings (validated by the plugin)."""

    kind: str
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$",
                      description="lower-case letters, digits and _; prefixes its signals")
    channels: str = Field(default="all", description="e.g. '1-8', '1,3,5-6' or 'all'")
    settings: dict[str, Any] = {}


class DeviceSection(AttachedSection):
    """``[[devices]]``: an OSI device (CAN/BMS, SMBus battery, data logger, lookup table) whose
    signals the tests of its channels record and may end steps or trip limits on; ``on_start``
    and ``on_stop`` are values (in each signal's own unit) written to it when a test on its
    channels starts and when one stops (and ``on_stop`` also when the station opens, after a
    crash, and when it closes)."""

    on_start: dict[str, FiniteFloat] = Field(
        default={}, description="signal = value to write before a test's first step")
    on_stop: dict[str, FiniteFloat] = Field(
        default={}, description="signal = value to write after every stop (output off first)")


class ChamberSection(AttachedSection):
    """``[[chambers]]``: a climate chamber holding the cells of its channels; their plans' chamber
    steps drive it, and its temperature is recorded with their samples."""

    on_fault: Literal["pause", "end"] = Field(
        default="pause", description="when the chamber reports a fault (door open, an alarm) or "
                                     "stops answering: 'pause' the tests inside (output off "
                                     "until it is back) or 'end' them with an alarm")
    band_grace: Duration = Field(
        default=60.0, description="how long the climate may stay outside the band a chamber "
                                  "step found it stable in before that is a fault, e.g. '2 min'")


class NotifierSection(_Strict):
    """``[[notifiers]]``: a notifier (mail, MQTT, ...) that receives the station's events; its
    settings are validated by the notifier. ``name`` (by default its kind) names it in the log
    and keeps its outbox apart from the other notifiers'."""

    kind: str
    name: str = Field(default="", pattern=r"^([a-z][a-z0-9_-]{0,63})?$",
                      description="lower-case letters, digits, - and _; by default the kind")
    settings: dict[str, Any] = {}

    @property
    def label(self) -> str:
        """The notifier's name in the station."""
        return self.name or self.kind


class InterfaceSection(_Strict):
    """``[[interfaces]]``: a control interface ``cellbench serve`` runs (rci, web); its settings
    are validated by the interface."""

    kind: str
    settings: dict[str, Any] = {}


class StationConfig(_Strict):
    """A whole station file."""

    station: StationSection = StationSection()
    plugins: PluginsSection = PluginsSection()
    channels: list[ChannelGroup] = [ChannelGroup(driver="sim")]
    sync: list[SyncSection] = []
    interfaces: list[InterfaceSection] = []
    devices: list[DeviceSection] = []
    chambers: list[ChamberSection] = []
    notifiers: list[NotifierSection] = []
    _source: _Source = PrivateAttr(default_factory=lambda: _Source("<station>", {}))

    @model_validator(mode="after")
    def _unique_names(self) -> StationConfig:
        seen: dict[str, KeyPath] = {}
        for kind, sections in (("devices", self.devices), ("chambers", self.chambers)):
            for n, section in enumerate(sections):
                if section.name in seen:
                    raise AtKey((kind, n, "name"), f"{section.name!r} is also the name of "
                                f"{_location(seen[section.name][:2])}: each device and chamber "
                                "needs a name of its own (it prefixes its signals)")
                seen[section.name] = (kind, n, "name")
        named: dict[str, int] = {}
        for n, notifier in enumerate(self.notifiers):
            if notifier.label in named:
                raise AtKey(("notifiers", n), f"{notifier.label!r} is also the name of "
                            f"notifiers[{named[notifier.label]}]: give each a name = of its own")
            named[notifier.label] = n
        return self

    def where(self, path: KeyPath) -> str:
        """Key ``path`` as errors name it: the station file, the line and the key."""
        return self._source.where(path)


@dataclass(frozen=True)
class _Source:
    """Where a station configuration came from: its file and the line of each key."""

    name: str
    lines: dict[KeyPath, int]

    def where(self, path: KeyPath) -> str:
        line = line_of(self.lines, path)
        return f"{self.name}{f':{line}' if line else ''}: {_location(path) or '(top level)'}"


def _location(loc: KeyPath) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The settings model of the table at ``path`` below ``model`` (None: free-form)."""
    current: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        if (found := _model_in(argument)) is not None:
            return found
    return None


def _explained(error: ErrorDetails, model: type[BaseModel]) -> str:
    """What is wrong, what was expected, and the closest known key for an unknown one."""
    path = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, path[:-1])
        known = list(parent.model_fields) if parent else []
        return (f"unknown key{did_you_mean(str(path[-1]), known)}"
                + (f" (expected one of: {', '.join(known)})" if known else ""))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "list_type" and _model_at(model, path) is not None:
        return (f"{message}: expected [[{_location(path)}]] tables, one for each "
                f"{path[-1]} entry")
    if error["type"] == "missing":
        return "required, but missing"
    return message


class AtKey(ValueError):
    """Raised by a validator of a whole table about one of its keys: ``path``, below the
    table, is the key an error names (its line and location), not the table."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path


def invalid(err: ValidationError, model: type[BaseModel], source: _Source | StationConfig,
            prefix: KeyPath = ()) -> StationError:
    """The StationError for settings ``model`` refused at key ``prefix`` of a station file:
    its line and key, what was expected, and the closest known key for an unknown one."""
    first = err.errors()[0]
    cause = first.get("ctx", {}).get("error")
    below = cause.path if isinstance(cause, AtKey) else ()
    return StationError(f"{source.where((*prefix, *first['loc'], *below))}: "
                        f"{_explained(first, model)}")


def load_station(path: Path) -> StationConfig:
    """Read and validate a station file; errors name the file, the line and the key, what was
    expected, and the closest known key for an unknown one."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as err:
        raise StationError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise StationError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise StationError(f"{path}: {err}") from None
    return _validated(data, _Source(str(path), key_lines(text)))


def station_from_dict(data: dict[str, Any], source: str = "<station>") -> StationConfig:
    """Validate a station configuration given as a mapping."""
    return _validated(data, _Source(source, {}))


def _validated(data: dict[str, Any], source: _Source) -> StationConfig:
    try:
        config = StationConfig.model_validate(data)
    except ValidationError as err:
        raise invalid(err, StationConfig, source) from None
    config._source = source
    return config


def _create(plugins: PluginManager, kind: Kind, name: str, settings: dict[str, Any],
            config: StationConfig, path: KeyPath) -> Any:
    """Build a capability from its validated settings; errors name the station file's line and
    key."""
    try:
        descriptor = plugins.registry.get(kind, name)
    except PluginError as err:
        known = [d.name for d in plugins.registry.all(kind)]
        raise StationError(f"{config.where((*path, _NAME_KEY.get(kind, 'kind')))}: {err}"
                           f"{did_you_mean(name, known)}") from None
    try:
        return descriptor.create(settings)
    except ValidationError as err:
        raise invalid(err, descriptor.settings, config, (*path, "settings")) from None
    except ValueError as err:  # a factory's own check of the settings
        raise StationError(f"{config.where((*path, 'settings'))}: {err}") from None


#: The key that names the plugin capability of a section, by the capability's kind.
_NAME_KEY = {Kind.CHANNEL_DRIVER: "driver", Kind.SYNC_TARGET: "target"}


def _channels(text: str, available: int, config: StationConfig, path: KeyPath) -> list[int]:
    try:
        return parse_channels(text, available)
    except StationError as err:
        raise StationError(f"{config.where(path)}: "
                           f"{str(err).removeprefix('--channels: ')}") from None


def parse_channels(text: str, available: int) -> list[int]:
    """Channel numbers from ``"1-8"``, ``"1,3,5-6"`` or ``"all"``; each must exist."""
    if text.strip().lower() == "all":
        return list(range(1, available + 1))
    numbers: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?", part, re.ASCII)
        if not match:
            raise StationError(f"--channels: {part.strip()!r} is not a channel number or "
                               "range like 3 or 1-8")
        first, last = int(match[1]), int(match[2] or match[1])
        if first > last:
            raise StationError(f"--channels: range {first}-{last} runs backwards")
        for n in range(first, last + 1):
            if not 1 <= n <= available:
                raise StationError(f"--channels: channel {n} does not exist "
                                   f"(this station has channels 1-{available})")
            if n in numbers:
                raise StationError(f"--channels: channel {n} is named twice")
            numbers.append(n)
    return numbers


class Station:
    """The channel drivers and interfaces of a station, built from its configuration and the
    plugins; ``base_dir`` (the station file's folder) anchors its relative paths.

    ``plugins`` is the station's own manager (a :meth:`~PluginManager.view` of the process's):
    the station registers its notifiers on it. ``tables`` reads the tables of profile steps for
    the plans it runs.
    """

    def __init__(self, config: StationConfig, plugins: PluginManager,
                 base_dir: Path = Path()) -> None:
        self.config = config
        self.plugins = plugins
        self.base_dir = base_dir
        self.tables: TableLoader = lookup_tables(plugins.registry)
        self.drivers: list[tuple[str, ChannelDriver]] = []
        self.channels: list[ChannelRef] = []
        for n, group in enumerate(config.channels):
            self.drivers.append((group.driver, _create(plugins, Kind.CHANNEL_DRIVER,
                                                       group.driver, group.settings,
                                                       config, ("channels", n))))
        self.interfaces: list[tuple[str, Any]] = [
            (section.kind, _create(plugins, Kind.INTERFACE, section.kind, section.settings,
                                   config, ("interfaces", n)))
            for n, section in enumerate(config.interfaces)]
        self.devices: list[tuple[DeviceSection, OsiDevice]] = [
            (section, _create(plugins, Kind.OSI_DEVICE, section.kind, section.settings,
                              config, ("devices", n)))
            for n, section in enumerate(config.devices)]
        self.chambers: list[tuple[ChamberSection, ClimateChamber]] = [
            (section, _create(plugins, Kind.CLIMATE_CHAMBER, section.kind, section.settings,
                              config, ("chambers", n)))
            for n, section in enumerate(config.chambers)]
        self.notifiers: list[tuple[str, Any]] = []  # (name, notifier)
        self._notifier_events: EventDispatcher | None = None  # once started
        for n, notifier_section in enumerate(config.notifiers):
            where = f"notifiers[{n}]"
            notifier = _create(plugins, Kind.NOTIFIER, notifier_section.kind,
                               notifier_section.settings, self.config, ("notifiers", n))
            # A notifier implements the lifecycle hooks it cares about (test started and
            # finished, step changed, messages, alarms): the plugin manager calls it with them.
            try:
                plugins.hooks.register(notifier, name=f"{where} ({notifier_section.kind})")
            except (ValueError, pluggy.PluginValidationError) as err:
                raise StationError(f"{config.where(('notifiers', n))}: {err}") from None
            self.notifiers.append((notifier_section.label, notifier))
        self._chamber_of: dict[int, tuple[str, ClimateChamber]] = {}
        self._chamber_sections = {section.name: section for section in config.chambers}
        self._devices_of: dict[int, list[tuple[str, OsiDevice]]] = {}
        #: What :meth:`open` wrote as the devices' ``on_stop``, by device name.
        self.opening_writes: dict[str, dict[str, float]] = {}

    def channel_count(self) -> int | None:
        """How many channels the station has, known before it is opened; None when a driver
        learns its channels only when opened."""
        total = 0
        for _, driver in self.drivers:
            try:
                count = len(driver.channels)
            except DeviceError:
                count = 0
            if not count:
                return None
            total += count
        return total

    @property
    def plans_dir(self) -> Path:
        """Where interfaces find plans by name."""
        return self.base_dir / self.config.station.plans_dir

    @property
    def plan_files(self) -> PlanFiles:
        """The policy for the files of plans that arrive as text (queue rows, interfaces, tests
        resumed from the database): only files inside :attr:`plans_dir`, tables read by
        :attr:`tables`."""
        return PlanFiles(root=self.plans_dir, tables=self.tables)

    async def open(self, clock: Clock) -> None:
        """Open every driver, then every device and chamber (closing those already open if one
        fails), number the channels and attach the devices and chambers to theirs."""
        timeout = self.config.station.device_timeout
        opened: list[Device] = []
        try:
            for name, driver in self.drivers:
                await call_with_timeout(driver.open(clock), timeout, name, "open")
                opened.append(driver)
                for local in range(len(driver.channels)):
                    self.channels.append(ChannelRef(len(self.channels) + 1, driver, name, local))
            self.attach()
            for section, device in [*self.devices, *self.chambers]:
                await call_with_timeout(device.open(clock), timeout, section.name, "open")
                opened.append(device)
            self.check_device_writes()
        except (DeviceError, StationError):
            for device in reversed(opened):
                await device.close()
            self.channels.clear()
            raise
        # A crash (or a station stopped while a device did not answer) may have left a device
        # as a test had it: the state after a stop is where a station starts from.
        self.opening_writes = await self.write_on_stop("the station opened")

    def check_device_writes(self, opened: bool = True) -> None:
        """Check every device's ``on_start`` and ``on_stop``: each names a writable signal of
        the device, and its value is within the signal's range (StationError names the key).
        Unless ``opened``, devices that know their signals only once open are left out."""
        for n, (section, device) in enumerate(self.devices):
            try:
                infos = {info.name: info for info in device.signals}
            except DeviceError:
                infos = {}
            if not infos and not opened:
                continue
            for which, values in (("on_start", section.on_start), ("on_stop", section.on_stop)):
                for signal, value in values.items():
                    where = f"devices[{n}].{which}.{signal}"
                    if signal not in infos:
                        raise StationError(
                            f"{where}: device {section.name!r} has no signal {signal!r}"
                            f"{did_you_mean(signal, infos)} (its signals: "
                            f"{', '.join(infos) or 'none'})")
                    try:
                        check_writable(infos[signal], value, signal)
                    except ValueError as err:
                        raise StationError(f"{where}: {err}") from None

    async def write_on_stop(self, why: str) -> dict[str, dict[str, float]]:
        """Write every device's ``on_stop`` values, each under the device timeout, whatever
        became of the others; a device that refuses or does not answer is logged. Returns what
        was written: by device name, each signal's value."""
        timeout = self.config.station.device_timeout
        written: dict[str, dict[str, float]] = {}
        for section, device in self.devices:
            for signal, value in section.on_stop.items():
                text = f"{section.name}.{signal} = {value:g}"
                try:
                    await call_with_timeout(device.write(signal, value), timeout, section.name,
                                            "write")
                except DeviceError as err:
                    log.warning("on_stop as %s: writing %s failed: %s", why, text, err)
                    continue
                log.info("on_stop as %s: %s", why, text)
                written.setdefault(section.name, {})[signal] = value
        return written

    def attach(self) -> None:
        """Attach the devices and chambers to the numbered channels (StationError names the
        section whose channels do not exist or overlap)."""
        count = len(self.channels)
        self._chamber_of.clear()
        self._devices_of.clear()
        for n, (chamber_section, chamber) in enumerate(self.chambers):
            path = ("chambers", n, "channels")
            for number in _channels(chamber_section.channels, count, self.config, path):
                if number in self._chamber_of:
                    raise StationError(f"{self.config.where(path)}: channel {number} is already "
                                       f"in chamber {self._chamber_of[number][0]!r}")
                self._chamber_of[number] = (chamber_section.name, chamber)
        for n, (device_section, device) in enumerate(self.devices):
            for number in _channels(device_section.channels, count, self.config,
                                    ("devices", n, "channels")):
                self._devices_of.setdefault(number, []).append((device_section.name, device))

    def chamber_of(self, number: int) -> tuple[str, ClimateChamber] | None:
        """The climate chamber (its name and itself) holding channel ``number``'s cell."""
        return self._chamber_of.get(number)

    def chamber_names(self) -> dict[int, str]:
        """The name of the climate chamber of each channel in one, by channel number."""
        return {number: name for number, (name, _) in self._chamber_of.items()}

    def devices_of(self, number: int) -> list[tuple[str, OsiDevice]]:
        """The OSI devices (names and devices) serving channel ``number``."""
        return self._devices_of.get(number, [])

    def request(self, channel: ChannelRef, plan: Plan, battery: BatteryRecord | None = None,
                name: str = "", resume: Resume | None = None) -> TestRequest:
        """A test request on ``channel`` with the chamber and devices attached to it."""
        devices = self.devices_of(channel.number)
        sections = {section.name: section for section, _ in self.devices}
        request = TestRequest(
            channel, plan, battery, name=name, devices=tuple(devices), resume=resume,
            on_start=tuple((device, signal, value) for device, _ in devices
                           for signal, value in sections[device].on_start.items()),
            on_stop=tuple((device, signal, value) for device, _ in devices
                          for signal, value in sections[device].on_stop.items()))
        chamber = self.chamber_of(channel.number)
        if chamber is None:
            return request
        section = self._chamber_sections[chamber[0]]
        return replace(request, chamber=chamber[1], chamber_name=chamber[0],
                       chamber_on_fault=section.on_fault,
                       chamber_band_grace_s=section.band_grace)

    async def start_notifiers(self, database: Database,
                              control: StationControl | None = None) -> None:
        """Start every notifier that has a ``start(context)`` (see
        :class:`~cellbench_core.notifying.NotifierContext`) on ``database``; one that refuses
        (a password file that is not there) raises StationError naming it, after those already
        started were closed. Alarms the notifiers raise are recorded in ``database``."""
        name = self.config.station.name

        def record(problem: Problem) -> None:
            database.add_event(kind=problem.kind, message=problem.message,
                               unix_time_s=time.time(), data=problem.data)

        events = EventDispatcher(self.plugins.hook, on_problem=record)

        def raise_alarm(message: str) -> None:
            database.add_event(kind="alarm", message=message, unix_time_s=time.time())
            with contextlib.suppress(RuntimeError):  # the station is closing: the event has it
                events.fire("cellbench_alarm", Alarm(channel=None, test_id=None,
                                                     message=message))

        self._notifier_events = events
        for n, (label, notifier) in enumerate(self.notifiers):
            start = getattr(notifier, "start", None)
            if start is None:
                continue
            context = NotifierContext(label, name, database, self.base_dir, raise_alarm, control)
            try:
                start(context)
            except (ValueError, OSError) as err:
                await self._close_notifiers()
                raise StationError(f"notifiers[{n}] ({label}) did not start: {err}") from None

    async def close(self) -> None:
        """Write every device's ``on_stop`` values if the station is open, close every device
        and chamber, then every driver (outputs off), then the notifiers that have a
        ``close``; idempotent."""
        if self.channels:
            await self.write_on_stop("the station closed")
        for _, device in [*self.devices, *self.chambers]:
            await device.close()
        for _, driver in self.drivers:
            await driver.close()
        await self._close_notifiers()

    async def _close_notifiers(self) -> None:
        if self._notifier_events is not None:
            await asyncio.to_thread(self._notifier_events.close)
        for _, notifier in self.notifiers:
            close = getattr(notifier, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result

    def select(self, text: str | None) -> list[ChannelRef]:
        """The channels named by a ``--channels`` value (all when ``None``)."""
        return [self.channels[n - 1] for n in parse_channels(text or "all", len(self.channels))]


"""The station: its TOML configuration, and the channel drivers it builds from the plugins.

A station file names the database, the sample period, which plugins to enable or disable, and
groups of channels, each group one channel driver with its settings. Channels are numbered from 1
across the whole station in file order.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cellbench_core.descriptors import Kind
from cellbench_core.plugins import PluginError, PluginManager
from cellbench_core.runner.engine import ChannelRef
from cellbench_core.units import parse_duration
from cellbench_hal import (
    ChannelDriver,
    Clock,
    DeviceError,
    RealClock,
    VirtualClock,
    call_with_timeout,
)


class StationError(ValueError):
    """The station file or a channel selection is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("expected a duration with its unit, like '1 s' or '100 ms'")
    return parse_duration(value)


class StationSection(_Strict):
    """``[station]``: identity, database, timing, and how ``cellbench serve`` runs."""

    name: str = "station"
    database: str = "sqlite:///cellbench.db"
    sample_period: float = Field(default=1.0, description="e.g. '1 s', '100 ms'")
    device_timeout: float = Field(default=5.0, description="e.g. '5 s'")
    clock: Literal["real", "virtual"] = "real"
    speed: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                description="virtual clock: times faster than the wall")
    queue_poll_interval: float = Field(default=0.5, description="e.g. '0.5 s'")
    on_restart: Literal["end", "resume"] = Field(
        default="end", description="what `serve` does with the tests a crash interrupted")
    plans_dir: str = Field(default="plans", min_length=1,
                           description="where interfaces find plans by name; relative to the "
                                       "station file's folder")
    ring_size: int = Field(default=1000, ge=1, le=100_000,
                           description="newest samples kept in memory per channel for "
                                       "interfaces")

    @field_validator("sample_period", "device_timeout", "queue_poll_interval", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float:
        return _duration(value)

    @model_validator(mode="after")
    def _speed_needs_virtual_clock(self) -> StationSection:
        if self.speed is not None and self.clock != "virtual":
            raise ValueError("speed applies to clock = \"virtual\" only")
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
    interval: float = Field(default=0.5, description="between batches once caught up, e.g. "
                                                     "'0.5 s'")
    alarm_after: float = Field(default=300.0, description="alarm when not caught up this "
                                                          "long, e.g. '5 min'")

    @field_validator("interval", "alarm_after", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float:
        return _duration(value)


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


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_station(path: Path) -> StationConfig:
    """Read and validate a station file; errors name the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise StationError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise StationError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise StationError(f"{path}: {err}") from None
    return station_from_dict(data, str(path))


def station_from_dict(data: dict[str, Any], source: str = "<station>") -> StationConfig:
    """Validate a station configuration given as a mapping."""
    try:
        return StationConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise StationError(f"{source}: {_location(first['loc'])}: {first['msg']}") from None


def _create(plugins: PluginManager, kind: Kind, name: str, settings: dict[str, Any],
            where: str) -> Any:
    """Build a capability from its validated settings; errors name the station file's key."""
    try:
        descriptor = plugins.registry.get(kind, name)
    except PluginError as err:
        raise StationError(f"{where}: {err}") from None
    try:
        return descriptor.create(settings)
    except ValidationError as err:
        first = err.errors()[0]
        raise StationError(f"{where}.settings.{_location(first['loc'])}: "
                           f"{first['msg']}") from None
    except ValueError as err:  # a factory's own check of the settings
        raise StationError(f"{where}.settings: {err}") from None


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
    plugins; ``base_dir`` (the station file's folder) anchors its relative paths."""

    def __init__(self, config: StationConfig, plugins: PluginManager,
                 base_dir: Path = Path()) -> None:
        self.config = config
        self.plugins = plugins
        self.base_dir = base_dir
        self.drivers: list[tuple[str, ChannelDriver]] = []
        self.channels: list[ChannelRef] = []
        for n, group in enumerate(config.channels):
            self.drivers.append((group.driver, _create(plugins, Kind.CHANNEL_DRIVER,
                                                       group.driver, group.settings,
                                                       f"channels[{n}]")))
        self.interfaces: list[tuple[str, Any]] = [
            (section.kind, _create(plugins, Kind.INTERFACE, section.kind, section.settings,
                                   f"interfaces[{n}]"))
            for n, section in enumerate(config.interfaces)]

    @property
    def plans_dir(self) -> Path:
        """Where interfaces find plans by name."""
        return self.base_dir / self.config.station.plans_dir

    async def open(self, clock: Clock) -> None:
        """Open every driver (closing those already open if one fails) and number channels."""
        timeout = self.config.station.device_timeout
        opened: list[ChannelDriver] = []
        try:
            for name, driver in self.drivers:
                await call_with_timeout(driver.open(clock), timeout, name, "open")
                opened.append(driver)
                for local in range(len(driver.channels)):
                    self.channels.append(ChannelRef(len(self.channels) + 1, driver, name, local))
        except DeviceError:
            for driver in opened:
                await driver.close()
            self.channels.clear()
            raise

    async def close(self) -> None:
        """Close every driver (outputs off); idempotent."""
        for _, driver in self.drivers:
            await driver.close()

    def select(self, text: str | None) -> list[ChannelRef]:
        """The channels named by a ``--channels`` value (all when ``None``)."""
        return [self.channels[n - 1] for n in parse_channels(text or "all", len(self.channels))]

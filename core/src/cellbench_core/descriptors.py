"""Typed descriptors that plugins return from registration hooks.

A descriptor describes a capability as data: its kind, its name, where its implementation lives
(a lazy ``"module:attr"`` reference, imported only when the capability is used), the pydantic
model that validates its settings, and a one-line description for ``cellbench plugins``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Kind(StrEnum):
    """The kinds of capability a plugin can register."""

    CHANNEL_DRIVER = "channel driver"
    OSI_DEVICE = "OSI device"
    CLIMATE_CHAMBER = "climate chamber"
    SYNC_TARGET = "sync target"
    NOTIFIER = "notifier"
    INTERFACE = "interface"
    EXPORT_FORMAT = "export format"


class NoSettings(BaseModel, extra="forbid"):
    """Settings model for capabilities that take no settings."""


@dataclass(frozen=True)
class Descriptor:
    """One capability offered by a plugin.

    ``factory`` is ``"package.module:attr"``; calling the loaded attribute with the validated
    settings model returns the device, target, notifier or interface. ``emulator``, where the
    plugin ships one, names likewise an ``async def serve(host, port, *, speed=1.0)`` that runs
    an emulator of the device's peer on a socket until cancelled (``cellbench chamber emulate``).
    """

    kind: Kind
    name: str
    factory: str
    description: str
    settings: type[BaseModel] = NoSettings
    emulator: str = ""
    plugin: str = field(default="", compare=False)  # filled in by the registry

    def __post_init__(self) -> None:
        for what, reference in (("factory", self.factory), ("emulator", self.emulator)):
            module, sep, attr = reference.partition(":")
            if (reference or what == "factory") and not (module and sep and attr):
                raise ValueError(f"{what} of {self.kind} {self.name!r} must be 'module:attr', "
                                 f"not {reference!r}")

    def load(self) -> Any:
        """Import and return the factory named by ``factory``."""
        return _imported(self.factory)

    def load_emulator(self) -> Any:
        """Import and return the emulator's ``serve`` named by ``emulator`` (which must be set)."""
        if not self.emulator:
            raise ValueError(f"{self.kind} {self.name!r} ships no emulator")
        return _imported(self.emulator)

    def create(self, settings: dict[str, Any] | None = None) -> Any:
        """Validate ``settings`` against the settings model and build the capability."""
        return self.load()(self.settings.model_validate(settings or {}))


def _imported(reference: str) -> Any:
    """The object a ``"module:attr"`` reference names, imported now."""
    module, _, attr = reference.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj

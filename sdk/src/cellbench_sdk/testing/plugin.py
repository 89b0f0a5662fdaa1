"""The plugin check: a plugin module as a station would load it."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from cellbench_core import hookspecs
from cellbench_core.descriptors import Descriptor, Kind
from cellbench_core.plugins import PluginManager
from cellbench_hal import ChannelDriver, ClimateChamber, OsiDevice
from cellbench_sdk.testing._checker import raised, violation

_CONTRACTS: Final[dict[Kind, type]] = {
    Kind.CHANNEL_DRIVER: ChannelDriver,
    Kind.OSI_DEVICE: OsiDevice,
    Kind.CLIMATE_CHAMBER: ClimateChamber,
}

# --- plugins ------------------------------------------------------------------------------------


def check_plugin(
    plugin: object,
    settings: Mapping[tuple[Kind, str], Mapping[str, Any]] | None = None,
    *,
    only: tuple[Kind, str] | None = None,
) -> list[Descriptor]:
    """Check a plugin (the module its entry point names) as a station would load it; return its
    descriptors.

    Every hook implementation must match a hookspec, and at least one must exist; every
    descriptor's factory (with ``only``, that of the descriptor of this kind and name) must
    import, its settings model must build from its defaults (or from ``settings[(kind,
    name)]``), and a device's factory must build a device of its kind's contract from those
    settings, without touching hardware (devices connect in ``open``).
    """
    name = getattr(plugin, "__name__", type(plugin).__name__)
    manager = PluginManager()
    specs = sorted(n for n in dir(hookspecs)
                   if manager.hooks.parse_hookspec_opts(hookspecs, n) is not None)
    impls = [n for n in dir(plugin) if manager.hooks.parse_hookimpl_opts(plugin, n) is not None]
    subject = f"plugin {name}"
    if not impls:
        raise violation(subject, "its hook implementations", "a plugin implements at least one "
                         "hook, marked with @cellbench_sdk.hookimpl", "none found")
    for impl in impls:
        if impl not in specs:
            close = difflib.get_close_matches(impl, specs, n=1)
            raise violation(subject, f"hook {impl}", "every hook implementation matches a "
                             f"hook of cellbench ({', '.join(specs)})",
                             f"no hook is called {impl}"
                             + (f"; did you mean {close[0]}?" if close else ""))
    reason = manager.register(name, plugin)
    if reason:
        raise violation(subject, "registration", "a hook takes only arguments its hookspec "
                         "names; registration hooks return Descriptors of their kind, with "
                         "names unique per kind", reason)
    descriptors = manager.registry.all()
    unknown = set(settings or {}) - {(d.kind, d.name) for d in descriptors}
    if unknown:
        names = ", ".join(f"{kind} {name!r}" for kind, name in sorted(unknown))
        offered = ", ".join(f"{d.kind} {d.name!r}" for d in descriptors) or "nothing"
        raise ValueError(f"settings names {names}, which {subject} does not offer (it offers "
                         f"{offered})")
    for descriptor in descriptors:
        if only is not None and (descriptor.kind, descriptor.name) != only:
            continue
        _check_descriptor(descriptor, (settings or {}).get((descriptor.kind, descriptor.name), {}))
    return descriptors


def _check_descriptor(d: Descriptor, settings: Mapping[str, Any]) -> None:
    subject = f"{d.kind} {d.name!r} of plugin {d.plugin}"
    if not d.description.strip():
        raise violation(subject, "description", "a descriptor has a one-line description for "
                         "`cellbench plugins`", repr(d.description))
    try:
        factory = d.load()
    except Exception as err:
        raise violation(subject, f"factory {d.factory!r}", "the factory 'module:attr' imports",
                         raised(err)) from err
    if not callable(factory):
        raise violation(subject, f"factory {d.factory!r}", "the factory is callable",
                         repr(factory))
    if not (isinstance(d.settings, type) and issubclass(d.settings, BaseModel)):
        raise violation(subject, "settings", "settings is a pydantic model class",
                         repr(d.settings))
    given = f"settings {dict(settings)}" if settings else "its defaults"
    try:
        model = d.settings.model_validate(dict(settings))
    except ValidationError as err:
        raise violation(subject, f"settings model {d.settings.__name__}",
                         "the settings model builds from its defaults (give check_plugin "
                         "settings= for a model with required fields)",
                         f"{given}: {err}") from err
    contract = _CONTRACTS.get(d.kind)
    if contract is None:
        return
    try:
        built: object = factory(model)
    except Exception as err:
        raise violation(subject, f"factory {d.factory!r} with {given}", "the factory builds the "
                         "device from its settings without touching hardware (a device "
                         "connects in open())", raised(err)) from err
    if not isinstance(built, contract):
        raise violation(subject, f"factory {d.factory!r}",
                         f"the factory of a {d.kind} returns a {contract.__name__}",
                         f"returned {type(built).__name__}")

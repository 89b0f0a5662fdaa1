"""Plugin manager: stevedore finds and imports plugins, pluggy calls them.

Each plugin distribution declares one entry point in the ``cellbench.plugins`` group. Loading is
isolated per plugin: one that fails to import, or implements a hook that has no spec, is reported
with its reason and the rest still load. A plugin that the station explicitly enables must load,
or startup fails with a clear message. Plugins can be disabled by the station config or by the
``CELLBENCH_DISABLE_PLUGINS`` environment variable (comma-separated names).

A process loads its plugins once: :func:`loaded_plugins` is that load (the command line's entry
point and every command use it), and :meth:`PluginManager.view` applies a station file's
``[plugins]`` choice to it without importing anything again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import metadata
from typing import Any

import pluggy
from stevedore import ExtensionManager, NamedExtensionManager

from cellbench_core import hookspecs
from cellbench_core.descriptors import Descriptor, Kind

ENTRY_POINT_GROUP = "cellbench.plugins"
DISABLE_ENV = "CELLBENCH_DISABLE_PLUGINS"

_REGISTRATION_HOOKS: dict[Kind, str] = {
    Kind.CHANNEL_DRIVER: "cellbench_channel_drivers",
    Kind.OSI_DEVICE: "cellbench_osi_devices",
    Kind.CLIMATE_CHAMBER: "cellbench_climate_chambers",
    Kind.SYNC_TARGET: "cellbench_sync_targets",
    Kind.NOTIFIER: "cellbench_notifiers",
    Kind.INTERFACE: "cellbench_interfaces",
    Kind.EXPORT_FORMAT: "cellbench_export_formats",
}


class PluginError(Exception):
    """A plugin that must load did not, or plugins contradict each other."""


@dataclass(frozen=True)
class PluginInfo:
    """A discovered plugin: its entry-point name, distribution, version and state."""

    name: str
    distribution: str
    version: str
    state: str  # "loaded", "failed" or "disabled"
    reason: str = ""


@dataclass
class Registry:
    """Capabilities by kind and name, filled once at startup; the runner reads only this."""

    _by_kind: dict[Kind, dict[str, Descriptor]] = field(default_factory=dict)

    def add(self, descriptor: Descriptor) -> None:
        """Add a capability; two plugins offering the same kind and name is an error."""
        names = self._by_kind.setdefault(descriptor.kind, {})
        if descriptor.name in names:
            other = names[descriptor.name].plugin
            raise PluginError(f"{descriptor.kind} {descriptor.name!r} is offered by both "
                              f"plugin {other!r} and plugin {descriptor.plugin!r}")
        names[descriptor.name] = descriptor

    def get(self, kind: Kind, name: str) -> Descriptor:
        """The descriptor of ``kind`` called ``name``; the error lists what is available."""
        try:
            return self._by_kind.get(kind, {})[name]
        except KeyError:
            known = ", ".join(sorted(self._by_kind.get(kind, {}))) or "none"
            raise PluginError(f"no {kind} called {name!r} is installed (available: {known})") \
                from None

    def all(self, kind: Kind | None = None) -> list[Descriptor]:
        """Every descriptor (of one kind), sorted by kind and name."""
        kinds = [kind] if kind else list(Kind)
        return [d for k in kinds for _, d in sorted(self._by_kind.get(k, {}).items())]

    def without(self, plugins: Iterable[str]) -> Registry:
        """A copy without the capabilities of ``plugins``."""
        left_out = set(plugins)
        return Registry({kind: {name: d for name, d in names.items() if d.plugin not in left_out}
                         for kind, names in self._by_kind.items()})


def _disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _distributions() -> dict[str, tuple[str, str]]:
    """Entry-point name -> (distribution, version), for ``cellbench plugins``."""
    return {ep.name: (ep.dist.name, ep.dist.version)
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist is not None}


class PluginManager:
    """Discovers, loads and registers plugins, and answers with a :class:`Registry`."""

    def __init__(self) -> None:
        self.hooks = pluggy.PluginManager(hookspecs.PROJECT)
        self.hooks.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: list[PluginInfo] = []

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``manager.hook.cellbench_test_started(event=...)``)."""
        return self.hooks.hook

    def load(self, disable: Iterable[str] = (), require: Iterable[str] = ()) -> None:
        """Discover every plugin, load the ones not disabled, and fill the registry.

        ``require`` names plugins the station explicitly enables: each must be installed, not
        disabled, and load cleanly, or :class:`PluginError` is raised.
        """
        disabled = set(disable) | _disabled_from_env()
        entry_points = {ep.name: ep for ep in
                        ExtensionManager(ENTRY_POINT_GROUP).list_entry_points()}
        failures: dict[str, str] = {}

        def on_failure(_manager: object, ep: metadata.EntryPoint, err: BaseException) -> None:
            failures[ep.name] = f"{type(err).__name__}: {err}"

        wanted = sorted(set(entry_points) - disabled)
        loaded: NamedExtensionManager[Any] = NamedExtensionManager(
            ENTRY_POINT_GROUP, names=wanted, name_order=True,
            on_load_failure_callback=on_failure, on_missing_entrypoints_callback=lambda _: None,
        )
        for ext in loaded:
            reason = self.register(ext.name, ext.plugin)
            if reason:
                failures[ext.name] = reason

        distributions = _distributions()
        for name in sorted(entry_points):
            dist, version = distributions.get(name, ("?", "?"))
            if name in disabled:
                self.plugins.append(PluginInfo(name, dist, version, "disabled"))
            elif name in failures:
                self.plugins.append(PluginInfo(name, dist, version, "failed", failures[name]))
            else:
                self.plugins.append(PluginInfo(name, dist, version, "loaded"))
        self._check_required(require)

    def view(self, disable: Iterable[str] = (), require: Iterable[str] = ()) -> PluginManager:
        """A manager over the plugins this one loaded, as a station file selects them.

        ``disable`` leaves plugins out: their hooks are not called and their capabilities are
        not in the view's registry. ``require`` is checked as :meth:`load` checks it. Nothing is
        imported again and this manager is not changed; hooks registered on the view (a
        station's notifiers) stay on the view.
        """
        left_out = set(disable)
        view = PluginManager()
        for name, plugin in self.hooks.list_name_plugin():
            if name not in left_out:
                view.hooks.register(plugin, name=name)
        view.registry = self.registry.without(left_out)
        view.plugins = [replace(info, state="disabled", reason="") if info.name in left_out
                        else info for info in self.plugins]
        view._check_required(require)
        return view

    def _check_required(self, require: Iterable[str]) -> None:
        """Raise :class:`PluginError` unless every plugin in ``require`` is loaded."""
        states = {info.name: info for info in self.plugins}
        for name in sorted(set(require)):
            info = states.get(name)
            if info is None:
                raise PluginError(f"plugin {name!r} is enabled in the station config but not "
                                  f"installed (installed: {', '.join(sorted(states)) or 'none'})")
            if info.state == "disabled":
                raise PluginError(f"plugin {name!r} is both enabled and disabled")
            if info.state == "failed":
                raise PluginError(f"plugin {name!r} is enabled in the station config but failed "
                                  f"to load: {info.reason}")

    def register(self, name: str, plugin: object) -> str:
        """Register one plugin object and its capabilities; return why it failed, or ``""``.

        A plugin with a hook implementation that matches no spec, or whose registration hooks
        fail, is unregistered again and leaves nothing behind.
        """
        try:
            self.hooks.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as err:
            return f"{type(err).__name__}: {err}"
        try:
            self.hooks.check_pending()
            staged = Registry({k: dict(v) for k, v in self.registry._by_kind.items()})
            for descriptor in self._descriptors_of(name, plugin):
                staged.add(descriptor)
        except Exception as err:  # a broken plugin must not take the station down
            self.hooks.unregister(plugin)
            return f"{type(err).__name__}: {err}"
        self.registry = staged  # only now, so a failing plugin leaves nothing behind
        return ""

    def _descriptors_of(self, name: str, plugin: object) -> list[Descriptor]:
        found: list[Descriptor] = []
        for kind, hook_name in _REGISTRATION_HOOKS.items():
            caller = getattr(self.hooks.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                for descriptor in impl.function() or []:
                    if not isinstance(descriptor, Descriptor):
                        raise PluginError(f"{hook_name} returned {descriptor!r}, "
                                          "not a Descriptor")
                    if descriptor.kind is not kind:
                        raise PluginError(f"{hook_name} returned a {descriptor.kind} "
                                          f"({descriptor.name!r}); it must return {kind}s")
                    found.append(replace(descriptor, plugin=name))
        return found


@cache
def loaded_plugins() -> PluginManager:
    """The process's plugin manager: every installed plugin not disabled by
    ``CELLBENCH_DISABLE_PLUGINS``, loaded on the first call. A station's choice of plugins is a
    :meth:`~PluginManager.view` of it."""
    manager = PluginManager()
    manager.load()
    return manager

"""Plugin manager: discovery, failure isolation, disabling, required plugins, descriptors."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stevedore import ExtensionManager

from cellbench_core.descriptors import Descriptor, Kind
from cellbench_core.plugins import DISABLE_ENV, PluginError, PluginManager, loaded_plugins

GOOD = """
from cellbench_core.descriptors import Descriptor, Kind
from cellbench_core.hookspecs import hookimpl

@hookimpl
def cellbench_notifiers():
    return [Descriptor(Kind.NOTIFIER, "{name}-note", "logging:getLogger", "test notifier")]
"""

Install = Callable[[str, str], None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a fake plugin distribution (module + dist-info with one entry point)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    ExtensionManager.ENTRY_POINT_CACHE.clear()

    def add(name: str, source: str) -> None:
        module = f"cbtest_{name.replace('-', '_')}_{tmp_path.name[-6:]}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source.format(name=name)))
        info = tmp_path / f"cbtest_{name.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: cbtest-{name}\n"
                                       "Version: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[cellbench.plugins]\n{name} = {module}\n")
        ExtensionManager.ENTRY_POINT_CACHE.clear()

    yield add
    ExtensionManager.ENTRY_POINT_CACHE.clear()


def _state(manager: PluginManager, name: str) -> tuple[str, str]:
    info = next(p for p in manager.plugins if p.name == name)
    return info.state, info.reason


def test_good_plugin_loads_with_version_and_descriptors(install: Install) -> None:
    install("alpha", GOOD)
    manager = PluginManager()
    manager.load()
    assert _state(manager, "alpha") == ("loaded", "")
    info = next(p for p in manager.plugins if p.name == "alpha")
    assert (info.distribution, info.version) == ("cbtest-alpha", "1.2.3")
    descriptor = manager.registry.get(Kind.NOTIFIER, "alpha-note")
    assert descriptor.plugin == "alpha"
    assert descriptor.load().__name__ == "getLogger"


def test_plugin_that_fails_to_import_is_reported_and_others_load(install: Install) -> None:
    install("broken", "import does_not_exist_anywhere\n")
    install("alpha", GOOD)
    manager = PluginManager()
    manager.load()
    state, reason = _state(manager, "broken")
    assert state == "failed"
    assert "does_not_exist_anywhere" in reason
    assert _state(manager, "alpha")[0] == "loaded"


def test_hookimpl_without_spec_is_rejected_and_leaves_nothing(install: Install) -> None:
    install("typo", GOOD + "\n@hookimpl\ndef cellbench_notifers():\n    return []\n")
    manager = PluginManager()
    manager.load()
    state, reason = _state(manager, "typo")
    assert state == "failed"
    assert "cellbench_notifers" in reason
    assert all(d.plugin != "typo" for d in manager.registry.all())
    assert manager.hooks.get_plugin("typo") is None


def test_disabled_by_config_and_by_environment(install: Install,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    install("alpha", GOOD)
    install("beta", GOOD)
    monkeypatch.setenv(DISABLE_ENV, " beta ,")
    manager = PluginManager()
    manager.load(disable=["alpha"])
    assert _state(manager, "alpha")[0] == "disabled"
    assert _state(manager, "beta")[0] == "disabled"
    with pytest.raises(PluginError, match="no notifier called 'alpha-note'"):
        manager.registry.get(Kind.NOTIFIER, "alpha-note")


def test_required_plugin_missing_failing_or_disabled(install: Install) -> None:
    install("broken", "raise RuntimeError('no licence dongle')\n")
    with pytest.raises(PluginError, match="'ghost' is enabled in the station config but not "
                                          "installed"):
        PluginManager().load(require=["ghost"])
    with pytest.raises(PluginError, match="failed to load: RuntimeError: no licence dongle"):
        PluginManager().load(require=["broken"])
    with pytest.raises(PluginError, match="both enabled and disabled"):
        PluginManager().load(require=["broken"], disable=["broken"])


def test_a_view_leaves_disabled_plugins_out_without_importing_again(
        install: Install) -> None:
    install("alpha", GOOD + "\n@hookimpl\ndef cellbench_alarm(event):\n    CALLS.append(event)\n"
                            "\nCALLS = []\n")
    install("beta", GOOD)
    manager = PluginManager()
    manager.load()
    view = manager.view(disable=["alpha"], require=["beta"])
    assert _state(view, "alpha")[0] == "disabled"
    assert view.hooks.get_plugin("alpha") is None
    with pytest.raises(PluginError, match="no notifier called 'alpha-note'"):
        view.registry.get(Kind.NOTIFIER, "alpha-note")
    # the same plugin object, registered again, not imported again
    assert view.hooks.get_plugin("beta") is manager.hooks.get_plugin("beta")
    assert view.registry.get(Kind.NOTIFIER, "beta-note").plugin == "beta"
    # the manager it was made from is unchanged
    assert _state(manager, "alpha")[0] == "loaded"
    manager.registry.get(Kind.NOTIFIER, "alpha-note")
    view.hook.cellbench_alarm(event="ignored")
    alpha = manager.hooks.get_plugin("alpha")
    assert alpha.CALLS == []
    manager.hook.cellbench_alarm(event="heard")
    assert alpha.CALLS == ["heard"]


def test_a_view_checks_required_plugins(install: Install) -> None:
    install("broken", "raise RuntimeError('no licence dongle')\n")
    install("alpha", GOOD)
    manager = PluginManager()
    manager.load()
    with pytest.raises(PluginError, match="'ghost' is enabled in the station config but not "
                                          "installed"):
        manager.view(require=["ghost"])
    with pytest.raises(PluginError, match="failed to load: RuntimeError: no licence dongle"):
        manager.view(require=["broken"])
    with pytest.raises(PluginError, match="both enabled and disabled"):
        manager.view(require=["alpha"], disable=["alpha"])


def test_the_process_loads_its_plugins_once() -> None:
    assert loaded_plugins() is loaded_plugins()
    assert _state(loaded_plugins(), "sim")[0] == "loaded"


def test_same_capability_from_two_plugins_keeps_the_first(install: Install) -> None:
    clash = GOOD.replace("{name}-note", "shared-note")
    install("one", clash)
    install("two", clash)
    manager = PluginManager()
    manager.load()
    assert _state(manager, "one")[0] == "loaded"
    state, reason = _state(manager, "two")
    assert state == "failed"
    assert "offered by both plugin 'one' and plugin 'two'" in reason


def test_descriptor_from_the_wrong_hook_is_rejected(install: Install) -> None:
    install("mixed", GOOD.replace("Kind.NOTIFIER", "Kind.CHANNEL_DRIVER"))
    manager = PluginManager()
    manager.load()
    state, reason = _state(manager, "mixed")
    assert state == "failed"
    assert "must return notifiers" in reason


def test_descriptor_factory_must_name_module_and_attribute() -> None:
    with pytest.raises(ValueError, match="must be 'module:attr'"):
        Descriptor(Kind.NOTIFIER, "x", "no_colon_here", "bad")


def test_the_simulator_plugin_is_discovered() -> None:
    manager = PluginManager()
    manager.load()
    assert _state(manager, "sim")[0] == "loaded"
    assert manager.registry.get(Kind.CHANNEL_DRIVER, "sim").plugin == "sim"


EVERY_KIND = """
from cellbench_core.descriptors import Descriptor, Kind
from cellbench_core.hookspecs import hookimpl

def _one(kind):
    return [Descriptor(kind, "every-" + kind.name.lower(), "logging:getLogger", "test")]

@hookimpl
def cellbench_channel_drivers():
    return _one(Kind.CHANNEL_DRIVER)

@hookimpl
def cellbench_osi_devices():
    return _one(Kind.OSI_DEVICE)

@hookimpl
def cellbench_climate_chambers():
    return _one(Kind.CLIMATE_CHAMBER)

@hookimpl
def cellbench_sync_targets():
    return _one(Kind.SYNC_TARGET)

@hookimpl
def cellbench_notifiers():
    return _one(Kind.NOTIFIER)

@hookimpl
def cellbench_interfaces():
    return _one(Kind.INTERFACE)

@hookimpl
def cellbench_export_formats():
    return _one(Kind.EXPORT_FORMAT)
"""


def test_every_registration_hook_fills_its_registry(install: Install) -> None:
    install("every", EVERY_KIND)
    manager = PluginManager()
    manager.load()
    assert _state(manager, "every") == ("loaded", "")
    for kind in Kind:
        descriptor = manager.registry.get(kind, f"every-{kind.name.lower()}")
        assert (descriptor.kind, descriptor.plugin) == (kind, "every")


def test_plugins_can_add_cli_commands(install: Install) -> None:
    import typer
    from typer.testing import CliRunner

    install("shout", """
import typer
from cellbench_core.hookspecs import hookimpl

@hookimpl
def cellbench_cli(app):
    @app.command("shout")
    def shout(word: str) -> None:
        typer.echo(word.upper())
""")
    manager = PluginManager()
    manager.load()
    app = typer.Typer()

    @app.command("other")
    def other() -> None:
        """A second command, so that Typer keeps command names."""

    manager.hook.cellbench_cli(app=app)
    result = CliRunner().invoke(app, ["shout", "volts"])
    assert result.output.strip() == "VOLTS"


def test_every_hook_is_exercised_by_some_test() -> None:
    """Like datasette's: a new hookspec needs a test that names it."""
    from pathlib import Path

    from cellbench_core import hookspecs

    root = Path(__file__).parents[2]
    sources = [p.read_text(encoding="utf-8") for pattern in
               ("tests/**/*.py", "core/tests/**/*.py", "sdk/tests/**/*.py",
                "plugins/*/tests/**/*.py") for p in root.glob(pattern)]
    names = [n for n in dir(hookspecs) if n.startswith("cellbench_")]
    untested = [n for n in names if not any(f"def {n}(" in s for s in sources)]
    assert untested == []

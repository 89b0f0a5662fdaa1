"""check_plugin passes the simulated plugin and catches each kind of broken plugin."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_sdk.testing import ChannelDriverContract, check_plugin
from cellbench_sim import plugin as sim_plugin
from cellbench_sim.chamber import SimChamberSettings
from cellbench_sim.channel import SimChannelSettings


def plugin(**hooks: Callable[..., object]) -> ModuleType:
    """A plugin module with the given hook implementations."""
    module = ModuleType("cbtest_plugin")
    for name, function in hooks.items():
        setattr(module, name, hookimpl(function))
    return module


def channel_driver(factory: str = "cellbench_sim.channel:SimChannels",
                   settings: type = SimChannelSettings, description: str = "test driver",
                   kind: Kind = Kind.CHANNEL_DRIVER) -> ModuleType:
    """A plugin offering one channel driver."""
    descriptor = Descriptor(kind, "drv", factory, description, settings)
    return plugin(cellbench_channel_drivers=lambda: [descriptor])


def test_simulated_plugin_passes() -> None:
    descriptors = check_plugin(sim_plugin)
    assert [(d.kind, d.name, d.plugin) for d in descriptors] == [
        (Kind.CHANNEL_DRIVER, "sim", "cellbench_sim.plugin"),
        (Kind.CHANNEL_DRIVER, "sim-bulk", "cellbench_sim.plugin"),
        (Kind.OSI_DEVICE, "sim", "cellbench_sim.plugin"),
        (Kind.CLIMATE_CHAMBER, "sim", "cellbench_sim.plugin"),
    ]
    check_plugin(sim_plugin, {(Kind.CHANNEL_DRIVER, "sim"): {"count": 2},
                              (Kind.CLIMATE_CHAMBER, "sim"): {"has_humidity": True}})


def test_capabilities_other_than_devices_only_need_an_importable_factory() -> None:
    notifier = Descriptor(Kind.NOTIFIER, "log", "logging:getLogger", "logs events")
    (checked,) = check_plugin(plugin(cellbench_notifiers=lambda: [notifier]))
    assert checked.load().__name__ == "getLogger"


class NeedsPort(SimChannelSettings):
    port: int


def test_required_settings_are_given_by_kind_and_name() -> None:
    with pytest.raises(AssertionError) as failure:
        check_plugin(channel_driver(settings=NeedsPort))
    assert str(failure.value).startswith(
        "channel driver 'drv' of plugin cbtest_plugin: settings model NeedsPort\n"
        "  contract: the settings model builds from its defaults (give check_plugin settings= "
        "for a model with required fields)\n"
        "  got:      its defaults: 1 validation error for NeedsPort\nport\n  Field required")
    check_plugin(channel_driver(settings=NeedsPort), {(Kind.CHANNEL_DRIVER, "drv"): {"port": 1}})
    with pytest.raises(ValueError, match="settings names OSI device 'drv', which plugin "
                                         "cbtest_plugin does not offer"):
        check_plugin(channel_driver(), {(Kind.OSI_DEVICE, "drv"): {}})


BROKEN: list[tuple[str, ModuleType, list[str]]] = [
    ("no hooks", plugin(), ["plugin cbtest_plugin: its hook implementations",
                            "marked with @cellbench_sdk.hookimpl", "none found"]),
    ("misspelt hook", plugin(cellbench_notifers=lambda: []),
     ["hook cellbench_notifers", "no hook is called cellbench_notifers; did you mean "
                                 "cellbench_notifiers?"]),
    ("hook argument not in the spec", plugin(cellbench_cli=lambda application: None),
     ["registration", "application"]),
    ("descriptor of the wrong kind", channel_driver(kind=Kind.OSI_DEVICE),
     ["cellbench_channel_drivers returned a OSI device ('drv'); it must return channel "
      "drivers"]),
    ("factory module missing", channel_driver("cellbench_sim.nowhere:Driver"),
     ["factory 'cellbench_sim.nowhere:Driver'", "imports",
      "ModuleNotFoundError: No module named 'cellbench_sim.nowhere'"]),
    ("factory attribute missing", channel_driver("cellbench_sim.channel:Nothing"),
     ["raised AttributeError", "Nothing"]),
    ("factory not callable", channel_driver("cellbench_sim.osi:TEMPERATURE"),
     ["the factory is callable", "'temperature_c'"]),
    ("factory builds another kind", channel_driver("cellbench_sim.chamber:create_chamber",
                                                   SimChamberSettings),
     ["the factory of a channel driver returns a ChannelDriver", "returned SimChamber"]),
    ("factory fails to build", channel_driver("builtins:open"),
     ["with its defaults", "without touching hardware", "raised TypeError"]),
    ("settings not a pydantic model", channel_driver(settings=dict),
     ["settings is a pydantic model class", "<class 'dict'>"]),
    ("no description", channel_driver(description=" "),
     ["channel driver 'drv' of plugin cbtest_plugin: description", "one-line description"]),
]


@pytest.mark.parametrize(("broken", "fragments"), [(m, f) for _, m, f in BROKEN],
                         ids=[name for name, _, _ in BROKEN])
def test_each_violation_is_caught_with_a_clear_message(broken: ModuleType,
                                                       fragments: list[str]) -> None:
    with pytest.raises(AssertionError) as failure:
        check_plugin(broken)
    message = str(failure.value)
    assert "\n  contract: " in message
    for fragment in fragments:
        assert fragment in message


def test_only_checks_the_descriptor_under_test() -> None:
    other = Descriptor(Kind.OSI_DEVICE, "needs-port", "cellbench_sim.channel:SimChannels",
                       "needs a port", NeedsPort)
    two = plugin(cellbench_channel_drivers=lambda: [Descriptor(
        Kind.CHANNEL_DRIVER, "drv", "cellbench_sim.channel:SimChannels", "driver",
        SimChannelSettings)], cellbench_osi_devices=lambda: [other])
    with pytest.raises(AssertionError, match="settings model NeedsPort"):
        check_plugin(two)
    assert len(check_plugin(two, only=(Kind.CHANNEL_DRIVER, "drv"))) == 2


def test_a_contract_class_naming_a_descriptor_the_plugin_lacks_says_what_it_offers() -> None:
    class TestMisnamed(ChannelDriverContract):
        plugin = "cellbench_sim.plugin"
        name = "simm"

    with pytest.raises(ValueError, match=r"channel driver 'simm', which plugin cellbench_sim."
                                         r"plugin does not offer \(it offers channel driver "
                                         r"'sim', "):
        TestMisnamed().build({})

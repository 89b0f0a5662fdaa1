"""The plugin registers its devices, and their descriptors build them from settings."""

from __future__ import annotations

from importlib import metadata

import pluggy
import pytest
from pydantic import ValidationError

from cellbench_core import hookspecs
from cellbench_sdk import Kind
from cellbench_sim import plugin
from cellbench_sim.chamber import SimChamber, SimHumidityChamber
from cellbench_sim.channel import SimChannels
from cellbench_sim.osi import SimOsiDevice


def test_entry_point_names_the_plugin_module() -> None:
    (entry,) = [e for e in metadata.entry_points(group="cellbench.plugins") if e.name == "sim"]
    assert entry.load() is plugin


def test_hooks_match_the_specs_and_build_the_devices() -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(plugin)
    manager.check_pending()
    (channels,) = manager.hook.cellbench_channel_drivers()[0]
    (chambers,) = manager.hook.cellbench_climate_chambers()[0]
    (osi,) = manager.hook.cellbench_osi_devices()[0]
    assert (channels.kind, chambers.kind, osi.kind) == (
        Kind.CHANNEL_DRIVER,
        Kind.CLIMATE_CHAMBER,
        Kind.OSI_DEVICE,
    )
    driver = channels.create({"count": 3, "chemistry": "lfp"})
    assert isinstance(driver, SimChannels) and len(driver.channels) == 3
    assert type(chambers.create()) is SimChamber
    assert type(chambers.create({"has_humidity": True})) is SimHumidityChamber
    assert isinstance(osi.create(), SimOsiDevice)
    with pytest.raises(ValidationError, match="count"):
        channels.create({"count": -1})

"""Station file validation and channel selection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cellbench_core.plugins import PluginManager
from cellbench_core.station import Station, StationError, load_station, parse_channels
from cellbench_hal import VirtualClock


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_station_file(tmp_path: Path) -> None:
    config = load_station(write(tmp_path, """
[station]
name = "lab-1"
database = "sqlite:///x.db"
sample_period = "100 ms"
device_timeout = "2 s"
[plugins]
enable = ["sim"]
[[channels]]
driver = "sim"
settings = {count = 3}
[[channels]]
driver = "sim"
settings = {count = 2, chemistry = "lfp"}
"""))
    assert config.station.sample_period == pytest.approx(0.1)
    assert config.station.device_timeout == 2.0
    manager = PluginManager()
    manager.load(require=config.plugins.enable)
    station = Station(config, manager)
    asyncio.run(station.open(VirtualClock()))
    assert [(c.number, c.local) for c in station.channels] == [
        (1, 0), (2, 1), (3, 2), (4, 0), (5, 1)]
    assert station.channels[3].driver is not station.channels[2].driver
    assert [c.number for c in station.select("2,4-5")] == [2, 4, 5]
    asyncio.run(station.close())


@pytest.mark.parametrize(("text", "message"), [
    ('[station]\nsample_perod = "1 s"\n',
     "station.toml:2: station.sample_perod: unknown key (did you mean 'sample_period'?)"),
    ('[station]\nsample_period = 1\n',
     "station.toml:2: station.sample_period: expected a duration"),
    ('[station]\nsample_period = "0 s"\n',
     "station.toml:2: station.sample_period: a duration must be positive"),
    ('[station]\nsample_period = "1e-300 s"\n',  # a busy loop, not a sample period
     "station.toml:2: station.sample_period: a duration must be at least 1 ms, got '1e-300 s'"),
    ('[[channels]]\nsettings = {}\n', "station.toml:1: channels[0].driver: required, but missing"),
    ("[station\n", "station.toml: Expected ']'"),
])
def test_bad_station_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StationError, match="station.toml") as err:
        load_station(write(tmp_path, text))
    assert message in str(err.value)


def test_a_name_given_twice_is_named_with_its_line(tmp_path: Path) -> None:
    """A device and a chamber of one name: the error names the second's line and key."""
    text = ('[[devices]]\nname = "box"\nkind = "sim"\n\n'
            '[[chambers]]\nkind = "sim"\nname = "box"\n')
    with pytest.raises(StationError) as err:
        load_station(write(tmp_path, text))
    assert str(err.value) == (
        f"{tmp_path / 'station.toml'}:7: chambers[0].name: 'box' is also the name of devices[0]: "
        "each device and chamber needs a name of its own (it prefixes its signals)")
    with pytest.raises(StationError, match=r"station.toml:3: station.speed: speed applies to "):
        load_station(write(tmp_path, '[station]\nclock = "real"\nspeed = 10\n'))


def test_bad_driver_settings_name_the_channel_group(tmp_path: Path) -> None:
    config = load_station(write(tmp_path, '[[channels]]\ndriver = "sim"\n'
                                          'settings = {count = 0}\n'))
    manager = PluginManager()
    manager.load()
    with pytest.raises(StationError, match=r"channels\[0\]\.settings\.count: Input should be "
                                           "greater than or equal to 1"):
        Station(config, manager)


def test_unknown_driver_lists_the_installed_ones(tmp_path: Path) -> None:
    config = load_station(write(tmp_path, '[[channels]]\ndriver = "maccor"\n'))
    manager = PluginManager()
    manager.load()
    with pytest.raises(Exception, match=r"no channel driver called 'maccor' is installed "
                                        r"\(available: .*sim"):
        Station(config, manager)


@pytest.mark.parametrize(("text", "expected"), [
    ("all", [1, 2, 3, 4]), ("3", [3]), ("1-3", [1, 2, 3]), (" 4 , 1-2 ", [4, 1, 2])])
def test_channel_selection(text: str, expected: list[int]) -> None:
    assert parse_channels(text, 4) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("5", "channel 5 does not exist (this station has channels 1-4)"),
    ("3-1", "range 3-1 runs backwards"),
    ("1,1", "channel 1 is named twice"),
    ("one", "'one' is not a channel number"),
    ("١", "is not a channel number"),  # Arabic-Indic digit one
])
def test_bad_channel_selection(text: str, message: str) -> None:
    with pytest.raises(StationError, match="--channels") as err:
        parse_channels(text, 4)
    assert message in str(err.value)

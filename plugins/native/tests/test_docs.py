"""docs/native.md shows the header and the example driver as they are, documents every setting,
and its station file is valid."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from cellbench_core.station import station_from_dict
from cellbench_native.settings import NativeSettings
from cellbench_sdk.driver_header import HEADER_PATH

from .conftest import EXAMPLE_SOURCE

DOC = Path(__file__).parents[3] / "docs" / "native.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_header_and_the_example_are_shown_unchanged() -> None:
    blocks = _blocks("c")
    assert HEADER_PATH.read_text(encoding="utf-8").rstrip("\n") in blocks
    assert EXAMPLE_SOURCE.read_text(encoding="utf-8").rstrip("\n") in blocks


def test_every_setting_is_in_the_table() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert rows == list(NativeSettings.model_fields)


def test_the_station_file_is_valid() -> None:
    [toml] = _blocks("toml")
    config = station_from_dict(tomllib.loads(toml), "docs/native.md")
    assert [d.kind for d in config.devices] == ["native"]
    assert [c.driver for c in config.channels] == ["native"]
    for settings in (config.devices[0].settings, config.channels[0].settings):
        NativeSettings.model_validate(settings)

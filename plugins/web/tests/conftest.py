"""A serving station with the web interface, for the API, fuzz and browser tests."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"

#: Three short cycles (a test that finishes in seconds at the station's speed).
CYCLES = """\
name: three-cycles
capacity: 2.5 Ah
steps:
  - repeat: 3
    steps:
      - Charge at 1C for 2 minutes
      - Discharge at 1C for 2 minutes or until 2.5 V
"""
#: A test that runs for the whole of a test.
LONG = """\
name: long
capacity: 2.5 Ah
steps:
  - Discharge at 0.1C for 10 hours or until 2.5 V
  - Charge at 0.1C for 10 hours
"""
#: A charge beyond its own voltage limit: it trips at once (an alarm event).
TRIP = """\
name: trip
capacity: 2.5 Ah
limits: {voltage_max: 3.0 V}
steps:
  - Charge at 1C for 1 hour
"""
#: A step an automation system drives over the API (setpoints, keepalives).
EXTERNAL = """\
name: external
capacity: 2.5 Ah
limits: {voltage_max: 4.2 V, current_max: 3 A}
steps:
  - external: {watchdog: 1 h, for: 10 h}
"""
#: A plan with a mistake on line 4 (a step the plan language does not know).
BAD = """\
name: bad
capacity: 2.5 Ah
steps:
  - Discharge at minus lots
"""


@dataclass
class WebStation:
    """A serving station: its process, the web interface's base URL, its folder."""

    process: subprocess.Popen[str]
    url: str
    folder: Path
    #: The tokens of an operator and of a viewer (when the station has tokens).
    operator: str = OPERATOR
    viewer: str = VIEWER

    def headers(self, token: str) -> dict[str, str]:
        """The header that authenticates with ``token``."""
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def web_station(tmp_path: Path, serve_until_ready: Callable[[Path], tuple[Any, str]]
                ) -> Callable[..., WebStation]:
    """``web_station(tokens=True, channels=4)``: a station on the virtual clock (60 times the
    wall) serving the web interface on loopback, with the plans above; channel 1 is in the
    simulated climate chamber ``oven``."""

    def start(*, tokens: bool = True, channels: int = 4, speed: float = 60) -> WebStation:
        plans = tmp_path / "plans"
        plans.mkdir(exist_ok=True)
        for name, text in (("three-cycles", CYCLES), ("long", LONG), ("bad", BAD),
                           ("trip", TRIP), ("external", EXTERNAL)):
            (plans / f"{name}.yaml").write_text(text, encoding="utf-8")
        token_lines = (f'[interfaces.settings.tokens]\n"{OPERATOR}" = "operator lab-op"\n'
                       f'"{VIEWER}" = "viewer lab-view"\n') if tokens else ""
        station = tmp_path / "station.toml"
        station.write_text(f"""\
[station]
name = "webtest"
database = "sqlite:///{tmp_path / 'station.db'}"
clock = "virtual"
speed = {speed}
plans_dir = "plans"

[[channels]]
driver = "sim"
[channels.settings]
count = {channels}

[[chambers]]
kind = "sim"
name = "oven"
channels = "1"

[[interfaces]]
kind = "web"
[interfaces.settings]
listen = "127.0.0.1:0"
{token_lines}""", encoding="utf-8")
        process, ready = serve_until_ready(station)
        found = re.search(r"interfaces: web (http://127\.0\.0\.1:[0-9]+)/$", ready.strip())
        assert found, ready
        return WebStation(process, found[1], tmp_path)

    return start

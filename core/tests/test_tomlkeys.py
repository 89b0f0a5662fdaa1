"""Lines of the keys of a TOML text, for errors about station files."""

from __future__ import annotations

import tomllib

from cellbench_core.tomlkeys import key_lines, line_of

TEXT = """\
# a station
[station]
name = "lab"   # with a comment = and [brackets]
"odd.key" = 1

[[channels]]
driver = "sim"
[channels.settings]
count = 4
modes = [
  "cc", # not = a key
  "cv",
]

[[channels]]
driver = "simserv"
settings = { host = "h", port = 5 }
plugins.disable = ["x"]
"""


def test_every_table_and_key_has_its_line() -> None:
    tomllib.loads(TEXT)  # the text is valid TOML
    lines = key_lines(TEXT)
    assert lines[("station",)] == 2
    assert lines[("station", "name")] == 3
    assert lines[("station", "odd.key")] == 4
    assert lines[("channels",)] == 6
    assert lines[("channels", 0)] == 6
    assert lines[("channels", 0, "settings")] == 8
    assert lines[("channels", 0, "settings", "count")] == 9
    assert lines[("channels", 0, "settings", "modes")] == 10
    assert lines[("channels", 1, "driver")] == 16
    assert lines[("channels", 1, "settings")] == 17
    assert lines[("channels", 1, "plugins", "disable")] == 18
    assert not any(path[-1] == "not" for path in lines)  # inside the multi-line array


def test_a_key_without_a_line_takes_its_tables() -> None:
    lines = key_lines(TEXT)
    assert line_of(lines, ("channels", 1, "settings", "port")) == 17
    assert line_of(lines, ("channels", 0, "settings", "missing")) == 8
    assert line_of(lines, ("nowhere",)) is None

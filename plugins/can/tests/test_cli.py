"""`cellbench can emulate`: its commands on standard input, and refused arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cellbench_can.cli import register


@pytest.fixture
def app() -> typer.Typer:
    """A command line with the plugin's commands, as `cellbench` adds them."""
    app = typer.Typer()
    register(app)
    return app


def test_the_emulator_answers_each_command(app: typer.Typer, channel: str) -> None:
    result = CliRunner().invoke(
        app, ["can", "emulate", "--interface", "virtual", "--channel", channel],
        input="silence BMS_Pack\nresume\nbad BMS_Pack 3\nset CellTempMax 61\nsilence Nope\n"
              "hangup\ncount\nquit\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"BMS emulator: virtual:{channel} (node BMS, sends BMS_Pack, ")
    assert lines[1:5] == ["ok"] * 4
    assert lines[5] == ("error: the node does not send Nope (it sends BMS_Pack, "
                        "BMS_CellVoltages, BMS_CellSummary)")
    assert lines[6].startswith("error: unknown command 'hangup'")  # no adapter on this bus
    assert lines[7].startswith("ok ") and int(lines[7][3:]) >= 1  # the bad frame at least


@pytest.mark.parametrize(("args", "message"), [
    (["--database", "missing.dbc"], "missing.dbc: cannot read the CAN database"),
    (["--interface", "virtual"], "give --interface and --channel together"),
    (["--node", "CHARGER"], "the database has no message sent by node 'CHARGER'"),
    (["--interface", "no-such-interface", "--channel", "0"], "cannot open no-such-interface:0"),
])
def test_bad_arguments_are_refused(app: typer.Typer, tmp_path: Path, args: list[str], message: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["can", "emulate", *args], input="quit\n")
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()), result.output

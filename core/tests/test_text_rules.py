"""One rule for text that enters cellbench (cellbench_core.text), applied where it enters:
plan files, the database's names, queue rows, the station file; device text is stored with
escapes instead."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from cellbench_core.plan import PlanError, parse_plan
from cellbench_core.station import station_from_dict
from cellbench_core.storage import Database, TestStart, open_database
from cellbench_core.storage.queue import TestQueue
from cellbench_core.text import TextError, check_identifier, check_name, check_text, printable

#: Hostile input and faults (issue 20): `pytest -m faults` runs the fault-injection suite alone.
pytestmark = pytest.mark.faults


@pytest.mark.parametrize(("value", "message"), [
    ("a\x00b", "holds the control character U+0000 at position 2"),
    ("\x1b[31m", "U+001B at position 1"),
    ("\ud800", "control character U+D800"),
    (b"bytes", "must be text, not bytes"),
])
def test_text_refuses_control_characters_and_what_utf_8_cannot_hold(
        value: object, message: str) -> None:
    with pytest.raises(TextError, match=re.escape(message)):
        check_text(value, "x")
    assert check_text("tab\tand\nnewline, ümlaut, 温度 °C", "x")


@pytest.mark.parametrize(("value", "message"), [
    ("", "must not be empty"), ("  ", "must not be empty"), ("two\nlines", "one line"),
    (" lead", "must not start or end with blanks"), ("x" * 256, "256 characters long"),
])
def test_a_name_is_one_line_of_text_of_limited_length(value: str, message: str) -> None:
    with pytest.raises(TextError, match=re.escape(message)):
        check_name(value, "x")
    assert check_name("Capacity check, 25 °C", "x")


@pytest.mark.parametrize("value", ["a;b", "a,b"])
def test_an_identifier_holds_no_separator_of_remote_control_replies(value: str) -> None:
    with pytest.raises(TextError, match=re.escape("separates the fields")):
        check_identifier(value, "battery name")


def test_device_text_is_kept_with_escapes() -> None:
    assert printable("ok\x00\x07 °C\n") == "ok\\x00\\x07 °C\n"


@pytest.mark.parametrize(("plan", "message"), [
    ('name: "cycle\\0"\nsteps:\n  - Rest for 1 s\n',
     "plan.yaml:1: name: the text holds the control character U+0000"),
    ("name: " + "n" * 300 + "\nsteps:\n  - Rest for 1 s\n",
     "plan.yaml:1: name: the plan's name is 300 characters long; at most 255"),
    ('name: p\nsteps:\n  - message: "done\\x07"\n',
     "plan.yaml:3: steps[0].message: the text holds the control character U+0007"),
])
def test_plan_check_names_the_line_of_bad_text(plan: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(plan, "plan.yaml")
    assert message in str(caught.value)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'text.db'}")


def test_the_database_refuses_bad_names_and_keeps_device_text(db: Database) -> None:
    with pytest.raises(TextError, match=re.escape("battery name must not hold ';'")):
        db.add_battery("cell;A", "NMC", 2.5)
    with pytest.raises(TextError, match=re.escape("test name holds the control character U+0000")):
        db.start_tests([TestStart(name="cycle\x00", channel="1", driver="sim", battery=None,
                                  plan_name="p", plan_source="p.yaml", plan_text="",
                                  sample_period_s=1.0, station="lab", start_unix_s=1.7e9)])
    assert db.tests() == []  # nothing half-done
    db.add_event(kind="alarm", message="chamber: reply '\x15\x00'", unix_time_s=1.7e9)
    assert db.events()[-1].message == "chamber: reply '\\x15\\x00'"


def test_queue_rows_any_program_wrote_are_checked_as_they_are_read(
        db: Database, tmp_path: Path) -> None:
    queue = TestQueue(db)
    with pytest.raises(TextError, match=re.escape("name holds the control character U+0000")):
        queue.add(1, "name: p\nsteps:\n  - Rest for 1 s\n", name="x\x00")
    with sqlite3.connect(tmp_path / "text.db") as con:
        for channel, name in (("abc", None), (3.5, None), (2, "bad\x00name")):
            con.execute("INSERT INTO test_queue (channel, plan, name, status, created_unix_s) "
                        "VALUES (?, 'name: p', ?, 'queued', 0)", (channel, name))
    problems = [entry.problem for entry in queue.entries()]
    assert problems == ["channel 'abc' is not a station channel number (1, 2, ...)",
                        "channel 3.5 is not a station channel number (1, 2, ...)",
                        "name holds the control character U+0000 at position 4; text may not "
                        "hold control characters other than tab and newline"]


def test_the_station_name_is_an_identifier() -> None:
    with pytest.raises(ValueError, match=re.escape("the station's name must not hold ','")):
        station_from_dict({"station": {"name": "lab,1", "database": "sqlite:///x.db"},
                           "channels": [{"driver": "sim"}]}, "station.toml")


def test_errors_print_what_people_wrote_literally(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from cellbench_core.cli.console import fail

    with pytest.raises(typer.Exit):
        fail("column 'Time [s]' of [[devices]] :x: [bold]")
    assert "column 'Time [s]' of [[devices]] :x: [bold]" in capsys.readouterr().err

"""BaSyTec-style result files: layout and encoding, incremental writing, import round trips and
refusal of malformed files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import bdf
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cellbench_core.events import TestStatus
from cellbench_core.storage import Database, SampleRows, SampleWriter, TestEnd, open_database
from cellbench_export import BasytecFileError, BasytecWriter, import_basytec, write_basytec
from cellbench_export.basytec import DIGITS, number
from cellbench_export.cli import register

StartTest = Callable[..., int]
Batch = Callable[..., SampleRows]

AUX = {"chamber_temperature_c": 30.0, "bms_soc": 0.5}
#: How far a value read back may be from the one written: half a unit in the 15th digit.
RESOLUTION = 5e-15


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def assert_same_samples(db: Database, original: int, imported: int,
                        other: Database | None = None) -> None:
    want, got = db.samples(original), (other or db).samples(imported)
    assert sorted(got) == sorted(want)
    assert len(got["seq"]) == len(want["seq"]) > 0
    for name in want:
        if name == "unix_time_s":  # printed to the microsecond in the DateTime column
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6)
        elif want[name].dtype.kind in "iu":
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        else:  # written to BaSyTec's 15 significant digits
            np.testing.assert_allclose(got[name], want[name], rtol=RESOLUTION, atol=0,
                                       err_msg=name)


def test_a_simulated_test_round_trips_through_import(sim_run: tuple[Database, int],
                                                     tmp_path: Path) -> None:
    db, test_id = sim_run
    path = tmp_path / "cycles.txt"
    assert write_basytec(db, test_id, path) == len(db.samples(test_id)["seq"])
    imported = import_basytec(db, path, station="lab-7")
    assert_same_samples(db, test_id, imported)
    before, after = db.test(test_id), db.test(imported)
    assert before is not None and after is not None
    assert (after.name, after.channel, after.plan_name, after.status) == (
        before.name, before.channel, before.plan_name, TestStatus.FINISHED)
    assert after.start_unix_s == pytest.approx(before.start_unix_s, abs=1.0)  # printed to 1 s
    assert after.end_unix_s == pytest.approx(before.end_unix_s, abs=1.0)
    steps, found = db.steps(test_id), db.steps(imported)
    assert len(steps) == 7
    for a, b in zip(steps, found, strict=True):
        assert (b.step_no, b.step_index, b.plan_line, b.cycle, b.start_seq, b.end_seq) == (
            a.step_no, a.step_index, a.plan_line, a.cycle, a.start_seq, a.end_seq)
        assert b.start_test_time_s == pytest.approx(a.start_test_time_s, abs=1e-9)
        assert b.end_test_time_s == a.end_test_time_s
        assert b.ah == pytest.approx(a.ah, rel=1e-9, abs=1e-12)
        assert b.mode == ("rest" if a.mode == "rest" else "charge" if a.ah > 0 else "discharge")
        # and so do the per-cycle results: what flowed each way, and the temperature's range
        for name in ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh",
                     "temperature_min_c", "temperature_max_c"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-6, abs=1e-9), name
    assert [c.discharge_ah for c in db.cycles(imported)] == pytest.approx(
        [c.discharge_ah for c in db.cycles(test_id)], rel=1e-6)


def test_aux_signals_and_missing_values_round_trip_through_the_commands(
        tmp_path: Path, start_test: StartTest, batch: Batch) -> None:
    url, other = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    db = open_database(url)
    test_id = start_test(db)
    writer = SampleWriter(db)
    writer.submit(batch(test_id, 1, 40, 0, aux=AUX))
    writer.submit(batch(test_id, 41, 25, 1, aux=AUX))
    writer.submit_call(lambda: db.finish_test(test_id, "stopped", "operator", 1_700_000_100.0))
    writer.close()
    path = tmp_path / "staged.txt"
    runner = CliRunner()
    result = runner.invoke(cli(), ["export", str(test_id), "--format", "basytec", "-o",
                                   str(path), "--db", url])
    assert result.exit_code == 0, result.output
    assert "65 samples" in result.output
    target = open_database(other)
    target.add_battery("cell-A", "NMC", 2.5)
    result = runner.invoke(cli(), ["import", "basytec", str(path), "--db", other])
    assert result.exit_code == 0, result.output
    [imported] = target.tests()
    assert_same_samples(db, test_id, imported.id, target)
    assert (imported.name, imported.battery, imported.channel, imported.status) == (
        "staged Ölbad 25 °C", "cell-A", "bench/1", TestStatus.STOPPED)
    assert [(s.start_seq, s.end_seq) for s in target.steps(imported.id)] == [(1, 40), (41, 65)]
    db.close()
    target.close()


def test_a_running_test_written_incrementally_equals_a_one_shot_export(
        tmp_path: Path, start_test: StartTest, batch: Batch) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'running.db'}")
    test_id = start_test(db)
    writer = SampleWriter(db)
    incremental = BasytecWriter(db, test_id, tmp_path / "incremental.txt")
    sizes = []

    def grow(samples: SampleRows) -> int:
        writer.submit(samples)
        writer.flush()
        appended = incremental.update()
        sizes.append(incremental.path.stat().st_size)
        return appended

    assert incremental.update() == 0  # the preamble and header of a test without samples
    assert grow(batch(test_id, 1, 30, 0, aux={"bms_soc": 0.5})) == 30
    running = incremental.path.read_bytes()
    assert b"\n~End of Test: -------------------\n~Status:     running\n" in running
    assert grow(batch(test_id, 31, 20, 0, aux={"bms_soc": 0.5}, step_start_time_s=0.1234567890123)
                ) == 20
    # A signal that appears mid-test needs a column: the file is rewritten with it.
    assert grow(batch(test_id, 51, 30, 1, aux=AUX)) == 30
    assert grow(batch(test_id, 81, 10, 2, aux=AUX)) == 10
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    writer.submit_call(lambda: db.finish_tests([TestEnd(test_id, "finished", "done",
                                                        1_700_000_500.0)]))
    writer.close()
    assert incremental.update() == 0 and incremental.complete
    one_shot = tmp_path / "one-shot.txt"
    write_basytec(db, test_id, one_shot)
    assert incremental.path.read_bytes() == one_shot.read_bytes()
    text = one_shot.read_bytes().decode("latin-1")
    assert "\n~Status:    finished\n" in text and "~End of Test: -" not in text
    assert not list(tmp_path.glob("*.tmp"))
    db.close()


def test_the_file_is_latin1_with_the_basytec_preamble_and_header(
        tmp_path: Path, start_test: StartTest, batch: Batch) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'enc.db'}")
    test_id = start_test(db)
    writer = SampleWriter(db)
    writer.submit(batch(test_id, 1, 3, 0, aux=AUX))
    writer.close()
    path = tmp_path / "enc.txt"
    write_basytec(db, test_id, path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    assert lines[0] == b"~Resultfile from Basytec Battery Test System"
    assert b"~Name of Test: staged \xd6lbad 25 \xb0C" in lines
    assert b"~Battery: cell-A" in lines and b"~Testchannel: bench/1" in lines
    assert b"~Testplan: staged" in lines
    assert any(line.startswith(b"~Start of Test: ") for line in lines)
    header = next(line for line in lines if line.startswith(b"~Time[s]"))
    assert header.split(b"\t") == [
        b"~Time[s]", b"DataSet", b"DateTime", b"t-Step[s]", b"t-Set[s]", b"Line", b"Step",
        b"Command", b"U[V]", b"I[A]", b"P[W]", b"Ah[Ah]", b"Ah-Step", b"Wh[Wh]", b"Wh-Step",
        b"T1[\xb0C]", b"Cyc-Count", b"State", b"bms_soc", b"chamber_temperature[\xb0C]"]
    assert b"\r" not in data and "°".encode() not in data  # no UTF-8 anywhere
    first = lines[lines.index(header) + 1].split(b"\t")
    assert first[1] == b"1" and first[7] == b"Charge" and first[-1] == b""  # NaN: empty
    db.close()


FOREIGN = (
    "~Resultfile from Basytec Battery Test System\r\n~Date and Time of Data Converting: "
    "07.07.2023 10:55:58\r\n~\r\n~Name of Test: lab test\r\n~Battery: cell\r\n"
    "~Testplan: plan.pln\r\n~Testchannel: 1814 CH14\r\n~Start of Test: 19.06.2023 17:56:53\r\n"
    "~End of Test: 19.06.2023 18:00:00\r\n~\r\n"
    "~Time[h]\tDataSet\tt-Step[h]\tLine\tCommand\tU[V]\tI[A]\tAh[Ah]\tT1[\xb0C]\tR-AC\t"
    "Cyc-Count\tState\r\n"
    "0\t1\t0\t3\tPause\t3.52\t0\t0\t25.4\t0\t1\t3\r\n"
    "0.01\t2\t0.01\t3\tPause\t3.53\t0\t0\t25.4\t0\t1\t2\r\n"
    "0.02\t3\t0\t4\tCharge\t3.6\t0.45\t0.0001\t25.5\t0.0093\t1\t0\r\n"
    "0.03\t5\t0.01\t4\tCharge\t3.7\t0.45\t0.0046\t25.6\t0.0093\t1\t1\r\n"
    "0.04\t6\t0\t5\tDischarge\t3.5\t-0.9\t0.0040\t25.6\t\t2\t0\r\n"
)


def test_a_file_written_by_basytec_imports_with_its_steps(tmp_path: Path) -> None:
    path = tmp_path / "foreign.txt"
    path.write_bytes(FOREIGN.encode("latin-1"))
    db = open_database(f"sqlite:///{tmp_path / 'foreign.db'}")
    test_id = import_basytec(db, path)
    test = db.test(test_id)
    assert test is not None
    assert (test.name, test.channel, test.battery, test.plan_name) == (
        "lab test", "1814 CH14", None, "plan.pln")
    data = db.samples(test_id)
    np.testing.assert_allclose(data["test_time_s"], [0, 36, 72, 108, 144])
    np.testing.assert_array_equal(data["seq"], [1, 2, 3, 4, 5])  # DataSet gaps closed
    np.testing.assert_array_equal(data["plan_line"], [3, 3, 4, 4, 5])
    np.testing.assert_array_equal(data["step_index"], [2, 2, 3, 3, 4])
    np.testing.assert_allclose(data["R-AC"], [0, 0, 0.0093, 0.0093, np.nan])
    np.testing.assert_allclose(data["power_w"], data["voltage_v"] * data["current_a"])
    assert test.end_unix_s == pytest.approx(test.start_unix_s + 187)
    steps = db.steps(test_id)
    assert [(s.start_seq, s.end_seq, s.mode, s.text) for s in steps] == [
        (1, 2, "rest", "Pause"), (3, 4, "charge", "Charge"), (5, 5, "discharge", "Discharge")]
    # Ah[Ah] counts from the start of the test; the step's charge counts from its start.
    assert [s.ah for s in steps] == pytest.approx([0.0, 0.0046, 0.004 - 0.0046])
    db.close()


GOOD = FOREIGN.replace("\r\n", "\n").split("\n")
HEADER = 10  # index of the header line in GOOD (line 11 of the file)


def edit(index: int, text: str) -> str:
    lines = list(GOOD)
    lines[index] = text
    return "\n".join(lines)


@pytest.mark.parametrize(("content", "where"), [
    ("", ":1: not a BaSyTec result file"),
    ("Time[s]\tU[V]\tI[A]\n0\t1\t2\n", ":1: not a BaSyTec result file"),
    (edit(HEADER, "~Time[h]\tDataSet\tLine\tU[V]\tAh[Ah]"), ":11: the header has no I column"),
    (edit(HEADER + 2, "0.01\t2\t0.01\t3\tPause\t3,53\t0\t0\t25.4\t0\t1\t2"),
     ":13: column 'U[V]' (column 6): '3,53' is not a finite number"),
    (edit(HEADER + 3, "0.02\t3\t0\t4\tCharge\t3.6\t0.45"), ":14: 7 fields, but the header has 12"),
    (edit(HEADER + 4, "0.001\t5\t0.01\t4\tCharge\t3.7\t0.45\t0.0046\t25.6\t0.0093\t1\t1"),
     ":15: column 'Time[h]' goes back in time"),
    (edit(HEADER + 1, "0\t1\t0\t3\tPause\t3.52\tnan\t0\t25.4\t0\t1\t3"),
     ":12: column 'I[A]' (column 7): 'nan' is not a finite number"),
    (edit(HEADER + 1, "0\t1\t0\t3.5\tPause\t3.52\t0\t0\t25.4\t0\t1\t3"),
     ":12: column 'Line' (column 4): 3.5 is not an integer"),
    (edit(7, "~Start of Test: 19/06/2023"), ":8: '19/06/2023' is not a date"),
    (edit(HEADER, "~Time[h]\tDataSet\tDataSet\tU[V]\tI[A]"), ":11: column 'DataSet' appears twice"),
    ("\n".join(GOOD[:HEADER + 1]), ":12: the file has no data rows"),
    (edit(HEADER, GOOD[HEADER].replace("R-AC", "cycle")),
     ":11: column 'cycle' (column 10) cannot be stored as an aux signal"),
    (edit(HEADER - 2, "~Status: paused"), ":9: status 'paused' is not one of"),
])
def test_a_malformed_file_is_refused_naming_file_line_and_column(
        tmp_path: Path, content: str, where: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content.encode("latin-1"))
    db = open_database(f"sqlite:///{tmp_path / 'bad.db'}")
    with pytest.raises(BasytecFileError) as caught:
        import_basytec(db, path)
    assert str(caught.value).startswith(f"{path}{where}")
    assert db.tests() == []  # nothing half-imported
    db.close()


def test_the_import_command_reports_bad_files_and_imports_the_rest(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_bytes(FOREIGN.encode("latin-1"))
    bad.write_bytes(edit(HEADER + 3, "x").encode("latin-1"))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(cli(), ["import", "basytec", str(bad), str(good), "--db", url,
                                        "--channel", "import/1"])
    assert result.exit_code == 2
    assert f"{bad}:14: 1 fields" in result.output
    assert "1 of 2 files were not imported" in result.output
    db = open_database(url)
    assert [(t.name, t.channel) for t in db.tests()] == [("lab test", "import/1")]
    db.close()


# batterydf's own code warns of its invalid escape and a pandas deprecation.
@pytest.mark.filterwarnings("ignore:invalid escape sequence", "ignore:The inplace keyword")
def test_values_have_basytec_precision_and_no_line_ends_in_a_space(
        sim_run: tuple[Database, int], tmp_path: Path) -> None:
    """15 significant digits as BaSyTec writes them, read back by batterydf within that
    resolution; the preamble (with an empty battery) has no trailing spaces."""
    db, test_id = sim_run
    path = tmp_path / "cycles.txt"
    write_basytec(db, test_id, path)
    lines = path.read_bytes().decode("latin-1").split("\n")
    header = next(n for n, line in enumerate(lines) if line.startswith("~Time[s]"))
    assert not [line for line in lines[:header + 1] if line != line.rstrip()]
    digits = max(len(re.sub(r"[-.]", "", field.partition("E")[0]).strip("0"))
                 for line in lines[header + 1:] for n, field in enumerate(line.split("\t"))
                 if field and n not in (2, 7))  # DateTime and Command are text
    assert digits == DIGITS  # some stored values need all 15
    frame = bdf.read(path, plugin="basytec-txt", validate=False)
    want = db.samples(test_id)
    np.testing.assert_allclose(frame["Voltage / V"], want["voltage_v"], rtol=RESOLUTION, atol=0)
    np.testing.assert_allclose(frame["Current / A"], want["current_a"], rtol=RESOLUTION, atol=0)
    np.testing.assert_allclose(frame["Test Time / s"], want["test_time_s"], rtol=RESOLUTION,
                               atol=0)


@pytest.mark.parametrize(("value", "text"), [
    (3.525754891487412, "3.52575489148741"), (1.259385498273e-07, "1.259385498273E-7"),
    (-0.0, "0"), (25.47953, "25.47953"), (1234567.0, "1234567"), (float("nan"), "")])
def test_numbers_are_written_as_basytec_writes_them(value: float, text: str) -> None:
    assert number(value) == text

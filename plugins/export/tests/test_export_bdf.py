"""Battery Data Format files: accepted by the format's own validator, and holding the stored
values under the BDF column labels."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import bdf
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from cellbench_core.storage import Database, SampleRows, SampleWriter, open_database, upgrade
from cellbench_export import BdfFormat, write_bdf
from cellbench_export.cli import register

StartTest = Callable[..., int]
Batch = Callable[..., SampleRows]

SAME = {"Test Time / s": "test_time_s", "Unix Time / s": "unix_time_s",
        "Voltage / V": "voltage_v", "Current / A": "current_a", "Power / W": "power_w",
        "Cycle Count / 1": "cycle", "Step Index / 1": "step_index",
        "Step Time / s": "step_time_s", "Step Capacity / Ah": "ah", "Step Energy / Wh": "wh",
        "Surface Temperature T1 / degC": "temperature_c"}


def read(path: Path) -> pa.Table:
    return pq.read_table(path) if path.suffix == ".parquet" else pa_csv.read_csv(path)


def column(table: pa.Table, name: str) -> np.ndarray:
    values: np.ndarray = table.column(name).to_numpy(zero_copy_only=False).astype(float)
    return values


@pytest.mark.parametrize("form", list(BdfFormat))
def test_bdf_files_pass_the_validator_and_hold_the_stored_values(
        sim_run: tuple[Database, int], tmp_path: Path, form: BdfFormat) -> None:
    db, test_id = sim_run
    path = tmp_path / f"cycles.bdf.{form.value}"
    stored = db.samples(test_id)
    assert write_bdf(db, test_id, path, form) == len(stored["seq"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # legacy labels or time running backwards would warn
        report = bdf.validate(path, raise_on_error=True)
    assert report["ok"] and report["missing"] == []
    assert report["extras"] == ["Step Time / s"]  # BDF has no step time; kept as an extra
    assert report["n_rows"] == len(stored["seq"])
    table = read(path)
    for label, name in SAME.items():
        np.testing.assert_array_equal(column(table, label), stored[name], err_msg=label)
    steps = db.steps(test_id)
    count = column(table, "Step Count / 1")
    assert count[0] == 1 and count[-1] == len(steps)
    for step in steps:
        rows = slice(step.start_seq - 1, step.end_seq)
        assert set(count[rows]) == {step.step_no}
    net = column(table, "Net Capacity / Ah")
    assert net[-1] == pytest.approx(sum(s.ah for s in steps), rel=1e-12)


def test_missing_values_are_nulls_and_aux_signals_get_columns(
        tmp_path: Path, start_test: StartTest, batch: Batch) -> None:
    url = f"sqlite:///{tmp_path / 'aux.db'}"
    db = open_database(url)
    test_id = start_test(db)
    writer = SampleWriter(db)
    writer.submit(batch(test_id, 1, 12, 0, aux={"chamber_temperature_c": 30.0}))
    writer.close()
    path = tmp_path / "aux.bdf.parquet"
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["export", str(test_id), "--format", "bdf-parquet", "-o",
                                      str(path), "--db", url])
    assert result.exit_code == 0, result.output
    table = pq.read_table(path)
    stored = db.samples(test_id)
    voltage = table.column("Voltage / V")
    assert voltage.null_count == int(np.isnan(stored["voltage_v"]).sum()) > 0
    aux = table.column("chamber_temperature_c")
    assert aux.null_count == 4
    np.testing.assert_array_equal(column(table, "chamber_temperature_c"),
                                  stored["chamber_temperature_c"])
    assert bdf.validate(path)["extras"] == ["Step Time / s", "chamber_temperature_c"]
    db.close()


def test_a_test_without_samples_gives_a_file_with_the_columns(
        tmp_path: Path, start_test: StartTest) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    test_id = start_test(db)
    path = tmp_path / "empty.bdf.csv"
    assert write_bdf(db, test_id, path, BdfFormat.CSV) == 0
    assert path.read_text().splitlines()[0].startswith('"Test Time / s","Unix Time / s"')
    db.close()


def test_exporting_an_unknown_test_names_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    upgrade(url)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["export", "42", "--format", "bdf-csv", "-o",
                                      str(tmp_path / "x.bdf.csv"), "--db", url])
    assert result.exit_code == 2
    assert "no test with id 42" in result.output
    assert not list(tmp_path.glob("x.bdf.csv*"))

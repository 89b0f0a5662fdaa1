"""``cellbench native check``: what an integrator runs on a library before a station loads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cellbench_native.cli import register

from .conftest import Faults, Libraries

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """A command line holding ``native`` as the plugin registers it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """cellbench"""

    register(app)
    return app


def test_the_example_passes_both_contracts(app: typer.Typer, libraries: Libraries) -> None:
    result = runner.invoke(app, ["native", "check", str(libraries.example),
                                 "--config", "channels=3", "--write", "fan_pct=40",
                                 "--isolation", "in-process", "--settle", "0.02"])
    assert result.exit_code == 0, result.output
    assert "OSI device native:libexample.so: 4 signals" in result.output
    assert "fan_pct" in result.output and "writable" in result.output
    assert "passes the OSI-device contract" in result.output
    assert "channel bank native:libexample.so: 3 channels" in result.output
    assert "passes the channel-driver contract; modes: cc, cccv, cp, cr, cv, profile, rest" \
        in result.output


def test_a_missing_half_is_named_and_a_broken_contract_fails(
        app: typer.Typer, libraries: Libraries, faults: Faults) -> None:
    result = runner.invoke(app, ["native", "check", str(libraries.without_write),
                                 "--config", faults.config, "--isolation", "in-process",
                                 "--settle", "0.02"])
    assert result.exit_code == 0, result.output  # as a channel bank it is fine
    assert "not an OSI device: libnowrite.so lacks cb_write (cellbench_driver.h version 1)" \
        in result.output
    faults.set("garbage", "inf")
    result = runner.invoke(app, ["native", "check", str(libraries.faulty), "--as", "osi",
                                 "--config", faults.config])
    assert result.exit_code == 1, result.output
    assert "cb_read gave signal 'v' the value inf" in result.output


def test_bad_arguments_exit_2(app: typer.Typer, tmp_path: Path, libraries: Libraries) -> None:
    notes = tmp_path / "libnotes.so"
    notes.write_text("not a library\n")
    result = runner.invoke(app, ["native", "check", str(notes)])
    assert result.exit_code == 2 and "cannot load" in result.output
    result = runner.invoke(app, ["native", "check", str(libraries.example), "--write", "fan"])
    assert result.exit_code == 2 and "--write 'fan': give SIGNAL=VALUE" in result.output

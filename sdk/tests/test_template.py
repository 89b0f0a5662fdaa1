"""``cellbench plugin new``: every kind's new plugin passes its own conformance tests out of the
box, installs and shows in ``cellbench plugins``; bad arguments write nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cellbench_sdk import plugin as sdk_plugin
from cellbench_sdk.template import KINDS, PluginKind, new_plugin, plugin_files
from cellbench_sdk.testing import check_plugin

RUFF = shutil.which("ruff", path=os.path.dirname(sys.executable))


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_every_kind_passes_its_conformance_tests_out_of_the_box(tmp_path: Path) -> None:
    roots = [new_plugin(f"acme-{kind}", kind, tmp_path / kind) for kind in PluginKind]
    tests = [str(root / "tests") for root in roots]
    done = run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                "--import-mode=importlib", "--rootdir", str(tmp_path), *tests], tmp_path,
               PYTHONPATH=os.pathsep.join(str(root / "src") for root in roots))
    assert done.returncode == 0, done.stdout + done.stderr
    for root in roots:  # every kind's contract class ran its checks, on every settings case
        ran = [line for line in done.stdout.splitlines() if f"{root.name}/tests/test_" in line]
        assert [line for line in ran if "::test_contract" in line and "PASSED" in line], ran


def test_the_layout_names_the_plugin_everywhere(tmp_path: Path) -> None:
    files = plugin_files("acme-psu", "channel")
    assert sorted(files) == [
        "README.md", "pyproject.toml", "src/cellbench_acme_psu/__init__.py",
        "src/cellbench_acme_psu/driver.py", "src/cellbench_acme_psu/plugin.py",
        "src/cellbench_acme_psu/py.typed", "src/cellbench_acme_psu/settings.py",
        "tests/test_driver.py"]
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] == "cellbench-acme-psu"
    assert "cellbench-sdk" in project["project"]["dependencies"]
    assert project["project"]["entry-points"]["cellbench.plugins"] == {
        "acme-psu": "cellbench_acme_psu.plugin"}
    assert "{{" not in "".join(files.values())
    assert "class AcmePsuDriver(ChannelDriver):" in files["src/cellbench_acme_psu/driver.py"]


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed beside this Python")
def test_the_new_code_is_lint_clean(tmp_path: Path) -> None:
    assert RUFF is not None
    for kind in PluginKind:
        root = new_plugin("acme", kind, tmp_path / kind)
        done = run([RUFF, "check", "--isolated", "--line-length", "100", "--select",
                    "E,F,W,I,B,UP,SIM,RUF", "."], root)  # in the project: src/ is first-party
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv to install offline")
def test_an_installed_plugin_shows_in_cellbench_plugins(tmp_path: Path) -> None:
    root = new_plugin("acme-oven", "chamber", tmp_path / "cellbench-acme-oven")
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    assert run(["uv", "venv", "--quiet", "--offline", "--python", sys.executable, str(venv)],
               tmp_path).returncode == 0
    # The throwaway environment sees this one's packages (cellbench and its dependencies).
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "workspace.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    installed = run(["uv", "pip", "install", "--quiet", "--offline", "--no-deps", "--python",
                     str(python), "-e", str(root)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    listed = run([str(python), "-c", "from cellbench_core.cli import main; main()", "plugins"],
                 tmp_path, COLUMNS="200")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "acme-oven" in line)
    assert "cellbench-acme-oven" in line and "loaded" in line
    assert "climate chamber: acme-oven" in line


def test_the_sdk_plugin_adds_the_command(tmp_path: Path) -> None:
    (descriptorless,) = [hook for hook in dir(sdk_plugin) if hook.startswith("cellbench_")]
    assert descriptorless == "cellbench_cli" and check_plugin(sdk_plugin) == []
    app = typer.Typer()
    app.command("plugins")(lambda: None)  # a group needs a second command to show "plugin"
    sdk_plugin.cellbench_cli(app)
    result = CliRunner().invoke(app, ["plugin", "new", "acme-psu", "--kind", "osi", "--dir",
                                      str(tmp_path / "psu")])
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output
    assert (tmp_path / "psu/src/cellbench_acme_psu/device.py").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["Acme PSU", "--kind", "osi"], "NAME 'Acme PSU' is not a plugin name"),
    (["acme--psu", "--kind", "osi"], "NAME 'acme--psu' is not a plugin name"),
    (["4acme", "--kind", "osi"], "starting with a letter"),
    (["a" * 41, "--kind", "osi"], "at most 40 characters"),
    (["cellbench-acme", "--kind", "osi"], "leave out the prefix cellbench, which every plugin "
                                          "distribution gets (did you mean 'acme'?)"),
    (["acme", "--kind", "osi", "--dir", "taken"], "--dir: {tmp}/taken exists; choose another "
                                                  "NAME or --dir (nothing was written)"),
    (["taken", "--kind", "osi"], "NAME: {tmp}/cellbench-taken exists"),
    (["acme", "--kind", "osi", "--dir", "no/such/place"], "--dir: the folder {tmp}/no/such "
                                                          "to write place into does not exist"),
    (["acme", "--kind", "psu"], "Invalid value for '--kind'"),
])
def test_bad_arguments_are_named_and_nothing_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "cellbench-taken").mkdir()
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    app.command("plugins")(lambda: None)
    sdk_plugin.cellbench_cli(app)
    result = CliRunner().invoke(app, ["plugin", "new", *args], terminal_width=200)
    assert result.exit_code != 0
    assert message.format(tmp=tmp_path) in " ".join(result.output.split())
    assert sorted(tmp_path.rglob("*")) == before


def test_every_kind_has_its_templates() -> None:
    for kind, spec in KINDS.items():
        files = plugin_files("x", kind)
        assert f"src/cellbench_x/{spec.module}.py" in files
        assert spec.hook in files["src/cellbench_x/plugin.py"]

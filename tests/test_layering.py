"""The layers depend one way (hal <- core <- sdk <- plugins): a plugin's code imports
cellbench_sdk and cellbench_hal, never cellbench_core (ruff's banned-api rule, TID251, set up in
the root pyproject.toml, enforces it in CI); hal imports nothing of ours; the core and the SDK
import no plugin; no plugin imports another."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {package.name: package for package in ROOT.glob("plugins/*/src/*")
           if package.is_dir() and not package.name.endswith(".egg-info")}


def _ruff(cwd: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    """ruff's banned-api check under ``cwd`` with the configuration found there."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID251",
         "--output-format", "concise", *paths],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_a_plugin_that_imports_the_core_fails_the_lint(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    source = tmp_path / "plugins" / "acme" / "src" / "cellbench_acme" / "driver.py"
    source.parent.mkdir(parents=True)
    source.write_text('"""A driver."""\n\nfrom cellbench_sdk import hookimpl\n'
                      "from cellbench_core.units import Dimension\n\n"
                      "print(hookimpl, Dimension)\n")
    test = tmp_path / "plugins" / "acme" / "tests" / "test_driver.py"
    test.parent.mkdir(parents=True)
    test.write_text("from cellbench_core.units import Dimension\n\nprint(Dimension)\n")

    result = _ruff(tmp_path, ".")

    assert result.returncode == 1, result.stdout + result.stderr
    findings = [line for line in result.stdout.splitlines() if "TID251" in line]
    assert findings == [
        "plugins/acme/src/cellbench_acme/driver.py:4:1: TID251 `cellbench_core` is banned: "
        "plugins import cellbench_sdk, not cellbench_core: add what is missing to the SDK"]


def test_no_plugin_imports_the_core() -> None:
    result = _ruff(ROOT, "plugins")
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(folder: Path) -> Iterator[tuple[str, str]]:
    """Every absolutely imported top-level package under ``folder``, with where it is."""
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                yield name.split(".")[0], f"{path.relative_to(ROOT)}:{node.lineno}"


def _forbidden(folder: Path, banned: set[str]) -> list[str]:
    return [f"{where}: imports {package}" for package, where in _imports(folder)
            if package in banned]


def test_hal_imports_nothing_of_ours() -> None:
    assert PLUGINS, "no plugin packages found"
    ours = {"cellbench_core", "cellbench_sdk", *PLUGINS}
    assert _forbidden(ROOT / "hal" / "src", ours) == []


def test_the_core_and_the_sdk_import_no_plugin() -> None:
    assert _forbidden(ROOT / "core" / "src", {"cellbench_sdk", *PLUGINS}) == []
    assert _forbidden(ROOT / "sdk" / "src", set(PLUGINS)) == []


def test_no_plugin_imports_another() -> None:
    found = [problem for name, package in PLUGINS.items()
             for problem in _forbidden(package, set(PLUGINS) - {name})]
    assert found == []


def test_plugins_depend_on_the_sdk_not_the_core() -> None:
    wrong = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        requires = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        names = {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0] for r in requires}
        if "cellbench-sdk" not in names or "cellbench-core" in names:
            wrong.append(f"{pyproject.relative_to(ROOT)}: {sorted(names)}")
    assert wrong == []

"""The plugin author's guide (docs/plugins.md) stays true: its example plugin, extracted from the
guide, passes its own tests (the kit's contract class among them), the guide needs only the SDK,
and it lists every hook."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from cellbench_core import hookspecs

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
TEXT = GUIDE.read_text(encoding="utf-8")
# A code block whose first line is "# <path>" is a file of the example.
FILES = dict(re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)```", TEXT, re.DOTALL))
TESTS = re.findall(r"^def (test_\w+)\(", FILES.get("tests/test_acme.py", ""), re.MULTILINE)


def test_the_example_passes_its_tests(tmp_path: Path) -> None:
    for path, text in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--import-mode=importlib",
         "--rootdir", str(tmp_path), "tests"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path / "src")})
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.findall(r"::(\S+) PASSED", done.stdout)
    assert sorted(passed) == ["TestAcmeBC4::test_contract[defaults]",
                              "TestAcmeBC4::test_failed_open",
                              "TestAcmeBC4::test_plugin[defaults]", "test_bytes_on_the_wire"]


def test_the_guide_holds_every_file_of_the_layout_it_shows() -> None:
    assert sorted(FILES) == sorted(
        ["pyproject.toml", "tests/test_acme.py"]
        + [f"src/cellbench_acme/{name}.py" for name in ("__init__", "settings", "plugin", "driver")]
    )
    assert TESTS == ["test_bytes_on_the_wire"]


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads(FILES["pyproject.toml"])
    assert project["project"]["entry-points"]["cellbench.plugins"] == {
        "acme": "cellbench_acme.plugin"
    }


def test_the_guide_needs_only_the_sdk() -> None:
    assert "cellbench_core" not in TEXT


def test_the_guide_lists_every_hook() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("cellbench_")]
    assert len(hooks) == 13
    for hook in hooks:
        assert f"| `{hook}" in TEXT, f"docs/plugins.md does not list the hook {hook}"
    table = TEXT.split("| hook ", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\| `(cellbench_\w+)", table, flags=re.MULTILINE))
    assert listed <= set(hooks), f"docs/plugins.md lists unknown hooks: {listed - set(hooks)}"

"""The plugin author's guide (docs/plugins.md) stays true: its example plugin, extracted from the
guide, passes its own tests, and the guide lists every hook."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cellbench_core import hookspecs

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
TEXT = GUIDE.read_text(encoding="utf-8")
# A code block whose first line is "# <path>" is a file of the example.
FILES = dict(re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)```", TEXT, re.DOTALL))
TESTS = re.findall(r"^def (test_\w+)\(", FILES.get("tests/test_acme.py", ""), re.MULTILINE)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The example written out, its package importable; yields its test module."""
    root = tmp_path_factory.mktemp("cellbench-acme")
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(root / "src"))
    try:
        spec = importlib.util.spec_from_file_location("test_acme", root / "tests/test_acme.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(root / "src"))
        for name in [n for n in sys.modules if n.split(".")[0] == "cellbench_acme"]:
            del sys.modules[name]


def test_the_guide_holds_every_file_of_the_layout_it_shows() -> None:
    assert sorted(FILES) == sorted(
        ["pyproject.toml", "tests/test_acme.py"]
        + [f"src/cellbench_acme/{name}.py" for name in ("__init__", "settings", "plugin", "driver")]
    )
    assert len(TESTS) == 4


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads(FILES["pyproject.toml"])
    assert project["project"]["entry-points"]["cellbench.plugins"] == {
        "acme": "cellbench_acme.plugin"
    }


@pytest.mark.parametrize("name", TESTS)
def test_the_example_passes_its_tests(example: ModuleType, name: str) -> None:
    test: Callable[[], None] = getattr(example, name)
    test()


def test_the_guide_lists_every_hook() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("cellbench_")]
    assert len(hooks) == 12
    for hook in hooks:
        assert f"| `{hook}" in TEXT, f"docs/plugins.md does not list the hook {hook}"

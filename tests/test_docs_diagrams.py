"""Every drawn diagram in docs/ is drawn from its source as the source is now."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).parents[1] / "docs"
SOURCES = sorted(DOCS.glob("*.dot"))


def _renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_diagrams", DOCS / "render_diagrams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_a_diagram() -> None:
    assert DOCS / "architecture.dot" in SOURCES


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_svg_is_drawn_from_the_current_source(source: Path) -> None:
    svg = source.with_suffix(".svg")
    assert svg.exists(), f"{svg.name} is missing: run `python docs/render_diagrams.py`"
    assert _renderer().stamp(source) in svg.read_text(encoding="utf-8"), (
        f"{source.name} changed since {svg.name} was drawn: run `python docs/render_diagrams.py`")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) is not installed")
def test_sources_draw_without_errors() -> None:
    import subprocess

    for source in SOURCES:
        result = subprocess.run(["dot", "-Tsvg", str(source)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stderr, f"{source.name}: {result.stderr}"

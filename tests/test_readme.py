"""The README's quick-start lines are what CI runs and what the CLI offers."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_exactly_a_demo_line_and_a_test_line() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert commands[0].endswith("cellbench demo")
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_line_verbatim() -> None:
    test_line = quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_line in ci


def test_cli_reference_is_current(tmp_path: Path) -> None:
    """docs/cli.md is generated from the commands' own help; regenerate it when they change."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "typer", "cellbench_core.cli", "utils", "docs",
               "--name", "cellbench", "--output", str(tmp_path / "cli.md")]
    subprocess.run(command, check=True, capture_output=True)
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == (
        tmp_path / "cli.md").read_text(encoding="utf-8"), (
        "docs/cli.md is out of date: run `uv run python -m typer cellbench_core.cli utils docs "
        "--name cellbench --output docs/cli.md`")

"""The files a plan reads besides itself (includes, profile tables): the policy that confines a
plan arriving as text to the plans folder, regular files only, read without blocking, capped, and
never quoted in an error before they are known to be what the plan says they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellbench_core.plan import PlanError, load_plan, parse_plan
from cellbench_core.plan.files import MAX_PLAN_BYTES, PlanFiles
from cellbench_core.plan.tables import TableLoader

SECRET = "SECRET-first-line-of-a-file-no-plan-may-show"
INCLUDES = "name: p\nsteps:\n  - include: {}\n"
TABLE = "name: p\nsteps:\n  - {{mode: profile, table: {}, until: step_time >= 1 s}}\n"
STEPS = "steps:\n  - Rest for 1 s\n"
CSV = "time [s],current [A]\n0,1\n1,2\n"


@pytest.fixture
def plans(tmp_path: Path) -> Path:
    """A plans folder with a good include and table (one in a subfolder), beside a folder of
    files outside it: a plan, a shadow-like file, and links from inside to them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plan.yaml").write_text(STEPS, encoding="utf-8")
    (outside / "shadow").write_text(f"{SECRET}:$6$salt$hash:19000::::::\n", encoding="utf-8")
    folder = tmp_path / "plans"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "part.yaml").write_text(STEPS, encoding="utf-8")
    (folder / "profile.csv").write_text(CSV, encoding="utf-8")
    (folder / "link.yaml").symlink_to(outside / "plan.yaml")
    (folder / "link.csv").symlink_to(outside / "shadow")
    (folder / "notes.txt").write_text(f"{SECRET}\n", encoding="utf-8")
    return folder


def confined(plans: Path, tables: TableLoader) -> PlanFiles:
    return PlanFiles(root=plans, tables=tables)


def test_a_confined_plan_reads_files_inside_the_plans_folder(plans: Path,
                                                            tables: TableLoader) -> None:
    files = confined(plans, tables)
    plan = parse_plan(INCLUDES.format("sub/part.yaml"), source="queue entry 1", files=files)
    assert [step.text for step in plan.steps] == ["Rest for 1 s"]  # type: ignore[union-attr]
    parse_plan(TABLE.format("profile.csv"), source="queue entry 2", files=files)
    # Its includes read relative to their own file, inside the folder too.
    (plans / "sub" / "outer.yaml").write_text("steps:\n  - include: part.yaml\n",
                                              encoding="utf-8")
    parse_plan(INCLUDES.format("sub/outer.yaml"), source="queue entry 3", files=files)


@pytest.mark.faults
@pytest.mark.parametrize(("text", "named"), [
    (INCLUDES.format("/etc/passwd"), "/etc/passwd"),
    (INCLUDES.format("../outside/plan.yaml"), "../outside/plan.yaml"),
    (INCLUDES.format("link.yaml"), "link.yaml"),  # a symlink out of the folder
    (TABLE.format("../outside/shadow"), "../outside/shadow"),
    (TABLE.format("link.csv"), "link.csv"),
    (TABLE.format("/etc/shadow"), "/etc/shadow"),
], ids=["passwd", "dotdot", "symlink", "table-dotdot", "table-symlink", "table-etc-shadow"])
def test_a_confined_plan_is_refused_every_file_outside_the_plans_folder(
        plans: Path, tables: TableLoader, text: str, named: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(text, source="queue entry 1", files=confined(plans, tables))
    message = str(caught.value)
    assert f"{named}: outside the plans folder {plans}" in message
    assert SECRET not in message and "root:" not in message


def test_a_plans_source_does_not_move_the_folder_it_is_confined_to(
        plans: Path, tables: TableLoader) -> None:
    """A queue row's plan_source is any text a program wrote: it names the plan, and relative
    names start from the plans folder unless it lies inside it."""
    files = confined(plans, tables)
    with pytest.raises(PlanError, match=r"passwd: outside the plans folder"):
        parse_plan(INCLUDES.format("../../../../../../../../etc/passwd"),
                   source="/etc/cellbench.yaml", files=files)
    parse_plan(INCLUDES.format("sub/part.yaml"), source="/etc/cellbench.yaml", files=files)
    parse_plan(INCLUDES.format("part.yaml"), source=str(plans / "sub" / "main.yaml"),
               files=files)


@pytest.mark.faults
@pytest.mark.parametrize("policy", ["confined", "anywhere"])
def test_only_regular_files_within_the_cap_are_read_and_a_pipe_never_blocks(
        plans: Path, tables: TableLoader, policy: str) -> None:
    files = confined(plans, tables) if policy == "confined" else PlanFiles(tables=tables)
    os.mkfifo(plans / "pipe.yaml")
    os.mkfifo(plans / "pipe.csv")
    (plans / "big.yaml").write_text("steps:\n" + "  - Rest for 1 s\n" * (MAX_PLAN_BYTES // 16),
                                    encoding="utf-8")
    source = str(plans / "main.yaml")
    for text, name, problem in [
            (INCLUDES, "pipe.yaml", "cannot read the plan: it is a named pipe; only regular "
                                    "files are read"),
            (TABLE, "pipe.csv", "cannot read the table: it is a named pipe"),
            (INCLUDES, "sub", "cannot read the plan: it is a folder"),
            (INCLUDES, "big.yaml", f"the plan is larger than {MAX_PLAN_BYTES} bytes")]:
        with pytest.raises(PlanError) as caught:
            parse_plan(text.format(name), source=source, files=files)
        assert f"{plans / name}: {problem}" in str(caught.value)
    with pytest.raises(PlanError, match="pipe.yaml: cannot read the plan: it is a named pipe"):
        load_plan(plans / "pipe.yaml", files=files)


@pytest.mark.faults
def test_a_file_that_is_not_a_plan_or_table_is_never_quoted(plans: Path,
                                                            tables: TableLoader) -> None:
    """Run from the command line a plan may read anywhere, but an error about a file it names
    quotes nothing of that file until the file is known to be a plan (or a table)."""
    main = plans / "main.yaml"
    for text in (INCLUDES.format("/etc/passwd"), INCLUDES.format("notes.txt"),
                 TABLE.format("/etc/passwd"), TABLE.format("notes.txt"),
                 TABLE.format("../outside/shadow")):
        main.write_text(text, encoding="utf-8")
        with pytest.raises(PlanError) as caught:
            load_plan(main, tables=tables)
        assert "not a plan" in str(caught.value) or "heading" in str(caught.value)
        assert SECRET not in str(caught.value) and "root:" not in str(caught.value)


@pytest.mark.faults
def test_a_confined_plan_file_itself_may_not_lead_out_of_the_folder(
        plans: Path, tables: TableLoader) -> None:
    with pytest.raises(PlanError, match=r"link.yaml: outside the plans folder"):
        load_plan(plans / "link.yaml", files=confined(plans, tables))
    (plans / "main.yaml").write_text(INCLUDES.format("sub/part.yaml"), encoding="utf-8")
    assert load_plan(plans / "main.yaml", files=confined(plans, tables)).name == "p"

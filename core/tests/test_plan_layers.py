"""The plan package stands below the runner and beside storage: it imports neither, so the
dependency points one way (runner -> plan) and a plan can be checked without either loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Run in a fresh interpreter, where no test has imported the runner or storage already.
_IMPORT_PLAN_ALONE = textwrap.dedent("""
    import importlib
    import importlib.abc
    import pkgutil
    import sys

    FORBIDDEN = ("cellbench_core.runner", "cellbench_core.storage")

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                raise ImportError(f"the plan package imported {name}")
            return None

    sys.meta_path.insert(0, Refuse())
    import cellbench_core.plan as plan

    for module in pkgutil.iter_modules(plan.__path__, "cellbench_core.plan."):
        importlib.import_module(module.name)
    from cellbench_core.plan.show import show_plan

    parsed = plan.parse_plan('''
    name: flow
    steps:
      - repeat: 3
        steps:
          - {mode: cc, current: 1 A, until: [{when: voltage >= 4.2 V, then: goto rest}],
             for: 1 h}
          - {mode: rest, for: 10 min, label: rest}
    ''', "flow.yaml")
    show_plan(parsed)
    plan.dump_plan(parsed)
    print(sorted(name for name in sys.modules if name.startswith(FORBIDDEN)))
""")


def test_plan_imports_neither_runner_nor_storage() -> None:
    result = subprocess.run([sys.executable, "-c", _IMPORT_PLAN_ALONE], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

"""The conformance kit's pytest plugin, loaded wherever cellbench-sdk is installed (its ``pytest11``
entry point ``cellbench``; ``-p no:cellbench`` turns it off).

It parametrises the settings of every contract test class by the class's ``cases`` (through
the ``cellbench_case`` argument of its ``settings`` fixture) and provides the fixtures the checks
use.
"""

from __future__ import annotations

import pytest

from cellbench_sdk.peer import free_port
from cellbench_sdk.testing.contracts import Contract


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per settings case of a contract test class."""
    cls = metafunc.cls
    if (cls is None or not issubclass(cls, Contract)
            or "cellbench_case" not in metafunc.fixturenames):
        return
    if not cls.cases:
        raise ValueError(f"{cls.__name__}.cases is empty: give at least one settings case")
    metafunc.parametrize("cellbench_case", list(cls.cases.values()), ids=list(cls.cases))


@pytest.fixture
def unreachable_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    return free_port()

"""A station database on the PostgreSQL server on loopback. The SQLite one (``bench``) and the
comparison of a database with its backup (``digest``) come from the workspace's conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def postgres_bench(new_bench: Callable[[str], Any],
                   fresh_database: Callable[[str], str]) -> Any:
    """A station database in a fresh PostgreSQL database, with a battery and a running writer."""
    return new_bench(fresh_database("postgresql"))

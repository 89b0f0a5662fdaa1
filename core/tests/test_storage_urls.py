"""The database URL check and opening for reading: what is refused, and the fix each names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cellbench_core.storage import DatabaseOpenError, open_database, upgrade
from cellbench_core.storage.urls import checked_url


@pytest.mark.parametrize(("url", "fix"), [
    ("postgres://u:secret@db.lab/x", "postgresql+psycopg://u:***@db.lab/x"),
    ("postgresql+psycopg2://u@db.lab/x", "postgresql+psycopg://u@db.lab/x"),
    ("mysql://root@db.lab/x", "mysql+pymysql://root@db.lab/x"),
    ("mariadb://root@db.lab/x", "mysql+pymysql://root@db.lab/x"),
    ("lab.db", "sqlite:///lab.db"),
    ("oracle2://db.lab/x", "sqlite:///lab.db, postgresql+psycopg://"),
    ("sqlite://", "give a file path"),
])
def test_a_url_that_cannot_work_names_the_fix_without_the_password(url: str, fix: str) -> None:
    with pytest.raises(DatabaseOpenError) as caught:
        checked_url(url)
    assert fix in str(caught.value)
    assert "secret" not in str(caught.value)


def test_usable_urls_pass() -> None:
    for url in ("sqlite:///lab.db", "postgresql+psycopg://u@h/x", "mysql+pymysql://u@h/x"):
        assert checked_url(url).database in ("lab.db", "x")


def test_reading_refuses_a_database_without_the_cellbench_schema(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()  # an empty SQLite file of another program
    with pytest.raises(DatabaseOpenError, match="has no cellbench tables.*db upgrade"):
        open_database(f"sqlite:///{other}", create=False)


def test_upgrade_creates_then_reading_opens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    before, after = upgrade(url)
    assert before is None and after is not None
    assert upgrade(url) == (after, after)
    open_database(url, create=False).close()

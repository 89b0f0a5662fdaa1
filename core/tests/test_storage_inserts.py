"""Bulk inserts and id allocation (storage/inserts.py) and the channel lookups of a start, on
every backend (see conftest.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cellbench_core.storage import Database, TestStart, inserts, schema
from cellbench_core.storage.inserts import insert_rows, insert_with_ids

#: Texts that break naive quoting: quotes, backslashes before quotes, a DBAPI placeholder,
#: SQL, characters beyond the Basic Multilingual Plane, NUL (not on PostgreSQL: it cannot
#: store it).
HOSTILE = ["it's", 'say "hi"', "back\\slash", "\\", "\\'", "'; DROP TABLE events; --",
           "%s %(name)s %%", "emoji 🔋⚡", "tab\tnew\nline", "", "ends with \\"]
NUL = "nul\x00inside"


def _texts(db: Database) -> list[str]:
    return HOSTILE if db.engine.dialect.name == "postgresql" else [*HOSTILE, NUL]


def _event_rows(texts: list[str]) -> list[dict[str, object]]:
    return [{"test_id": None, "unix_time_s": 1.7e9 + n / 3, "kind": "probe", "channel": None,
             "message": text, "data": text} for n, text in enumerate(texts)]


def _stored(db: Database) -> list[tuple[object, ...]]:
    e = schema.events
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            sa.select(e.c.unix_time_s, e.c.message, e.c.data).order_by(e.c.id))]


def test_hostile_texts_round_trip_with_ids_in_order(db: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Statements of three rows at most: the rows span several of them.
    monkeypatch.setattr(inserts, "_STATEMENT_ROWS", 3)
    texts = _texts(db) * 3
    rows = _event_rows(texts)
    with db.engine.begin() as connection:
        ids = insert_with_ids(connection, schema.events, [dict(r) for r in rows])
        insert_rows(connection, schema.events, _event_rows(texts[::-1]))
    assert ids == list(range(ids[0], ids[0] + len(rows)))
    expected = [(r["unix_time_s"], r["message"], r["data"]) for r in rows]
    assert _stored(db) == expected + [(1.7e9 + n / 3, text, text)
                                      for n, text in enumerate(texts[::-1])]


def test_statements_end_before_their_size_bound(db: Database,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inserts, "_STATEMENT_CHARS", 1000)
    texts = [f"{n:03d}" + "x" * 200 for n in range(7)]  # two rows per statement
    with db.engine.begin() as connection:
        if db.engine.dialect.name == "mysql":
            statements = list(inserts._mysql_inserts(connection, schema.events,
                                                     _event_rows(texts)))
            assert [count for _, count in statements] == [2, 2, 2, 1]
            assert all(len(text) < 1000 for text, _ in statements)
        ids = insert_with_ids(connection, schema.events, _event_rows(texts))
    assert ids == list(range(ids[0], ids[0] + 7))
    assert [message for _, message, _ in _stored(db)] == texts


def test_texts_round_trip_without_backslash_escapes(db: Database) -> None:
    if db.engine.dialect.name != "mysql":
        pytest.skip("a MySQL/MariaDB session setting")
    texts = _texts(db)
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        insert_rows(connection, schema.events, _event_rows(texts))
        # The driver follows the session: a backslash is an ordinary character now.
        assert connection.connection.driver_connection.escape("\\") == "'\\'"
    assert [message for _, message, _ in _stored(db)] == texts


def _starts(channels: list[str], name: str = "t") -> list[TestStart]:
    return [TestStart(name=name, channel=channel, driver="sim", battery=None, plan_name="p",
                      plan_source="p.yaml", plan_text="name: p", sample_period_s=1.0,
                      station="st", start_unix_s=1000.0 + n)
            for n, channel in enumerate(channels)]


@pytest.mark.parametrize("whole_table", [False, True])
def test_start_finds_and_creates_channels(db: Database, monkeypatch: pytest.MonkeyPatch,
                                          whole_table: bool) -> None:
    from cellbench_core.storage import lookups

    # Names looked up in the whole table, or in IN-lists of two names (as if 20,000 tests
    # started among 100,000 channels).
    monkeypatch.setattr(lookups, "_ROWS_PER_NAME", 1000 if whole_table else 0)
    monkeypatch.setattr(lookups, "_IN_LIST_SIZE", 2)
    old = db.ensure_channel("c/old", "sim", {})
    channels = ["c/new-2", "c/old", "c/new-1", "c/new-2", "c/new-3"]
    ids = db.start_tests(_starts(channels))
    assert ids == list(range(ids[0], ids[0] + 5))
    assert [(t.id, t.channel) for t in db.tests()] == list(zip(ids, channels, strict=True))
    with db.engine.connect() as connection:
        found = dict(connection.execute(sa.select(schema.channels.c.name,
                                                  schema.channels.c.id)).all())
    # New channels are numbered in the order they first appear, after those that exist.
    assert [found[c] for c in ("c/old", "c/new-2", "c/new-1", "c/new-3")] == [
        old, old + 1, old + 2, old + 3]
    again = db.start_tests(_starts(["c/new-3", "c/new-1", "c/another"], name="again"))
    assert [t.channel for t in db.tests() if t.name == "again"] == [
        "c/new-3", "c/new-1", "c/another"]
    assert again == list(range(ids[-1] + 1, ids[-1] + 4))
    with db.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.channels)
                                  ).scalar_one() == 5

"""Sample-writer throughput: SampleWriter against plain sqlite3 executemany, in one run.

A producer thread submits batches of one row for each of ``--tests`` interleaved tests, as the
runner does every tick, while the writer thread commits them. The raw figures are sqlite3
``executemany`` of the same rows, already built as tuples, into the same table with the same
pragmas, one commit per 500,000 rows (the writer's largest transaction): once in arrival order,
once sorted by primary key as the writer inserts them (the ceiling). ``--layouts`` also runs both
against a WITHOUT ROWID table clustered on the key instead of cellbench's rowid table.

    .venv/bin/python bench/bench_storage.py [--tests 1000] [--rows-per-test 1000] [--url URL]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cellbench_core.storage import Database, SampleRows, SampleWriter, TestStart, open_database

COLUMNS = (
    "test_id, seq, test_time_s, unix_time_s, step_time_s, voltage_v, current_a, power_w, "
    "temperature_c, step_index, plan_line, cycle, ah, wh"
)
RAW_COMMIT_ROWS = 500_000  # the largest transaction SampleWriter makes


def make_tests(db: Database, count: int) -> np.ndarray:
    """Create ``count`` tests on as many channels; return their ids."""
    ids = db.start_tests([
        TestStart(name=f"bench {n}", channel=f"bench/{n}", driver="bench", battery=None,
                  plan_name="bench", plan_source="bench", plan_text="", sample_period_s=1.0,
                  station="bench", start_unix_s=time.time())
        for n in range(count)])
    return np.array(ids, dtype=np.int64)


def tick_rows(test_ids: np.ndarray, seq: int) -> SampleRows:
    """One row per test, as the runner submits them every tick."""
    n = len(test_ids)
    t = float(seq)
    rng = np.random.default_rng(seq)
    return SampleRows(
        test_id=test_ids,
        seq=np.full(n, seq, dtype=np.int64),
        test_time_s=np.full(n, t),
        unix_time_s=np.full(n, 1.7e9 + t),
        step_time_s=np.full(n, t),
        voltage_v=3.0 + rng.random(n),
        current_a=rng.random(n) - 0.5,
        power_w=rng.random(n),
        temperature_c=25.0 + rng.random(n),
        step_index=np.zeros(n, dtype=np.int64),
        plan_line=np.ones(n, dtype=np.int64),
        cycle=np.ones(n, dtype=np.int64),
        ah=rng.random(n),
        wh=rng.random(n),
    )


def bench_writer(url: str, tests: int, rows_per_test: int) -> float:
    """Rows/s through SampleWriter while a producer thread submits; prints the details."""
    db = open_database(url)
    test_ids = make_tests(db, tests)
    batches = [tick_rows(test_ids, seq) for seq in range(1, rows_per_test + 1)]
    writer = SampleWriter(db)

    def produce() -> None:
        for batch in batches:
            writer.submit(batch)

    start = time.perf_counter()
    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    writer.close()
    elapsed = time.perf_counter() - start
    db.close()
    total = tests * rows_per_test
    latency = np.array(writer.commit_latency_s())
    print(
        f"SampleWriter ({db.engine.dialect.name}): {total:,} rows in {elapsed:.2f} s = "
        f"{total / elapsed:,.0f} rows/s; {len(latency)} commits, "
        f"{total / len(latency):,.0f} rows/commit; submit-to-commit latency "
        f"p50 {np.percentile(latency, 50) * 1e3:.0f} ms, "
        f"p95 {np.percentile(latency, 95) * 1e3:.0f} ms, max {latency.max() * 1e3:.0f} ms"
    )
    return total / elapsed


def raw_rows(tests: int, rows_per_test: int) -> list[tuple[float | int, ...]]:
    return [
        (t, k, k * 1.0, 1.7e9 + k, k * 1.0, 3.7, 0.1, 0.37, 25.0, 0, 1, 1, 0.1, 0.37)
        for k in range(1, rows_per_test + 1)
        for t in range(1, tests + 1)
    ]


def bench_raw(
    path: Path, create: list[str], rows: list[tuple[float | int, ...]], key_order: bool
) -> float:
    """Rows/s of plain sqlite3 executemany into a fresh table made by ``create``; with
    ``key_order`` each transaction's rows are sorted by primary key (outside the timing)."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA cache_size=-65536")
    for statement in create:
        connection.execute(statement)
    connection.commit()
    insert = f"INSERT INTO samples ({COLUMNS}) VALUES ({', '.join('?' * 14)})"
    chunks = [
        rows[first : first + RAW_COMMIT_ROWS] for first in range(0, len(rows), RAW_COMMIT_ROWS)
    ]
    if key_order:
        chunks = [sorted(chunk) for chunk in chunks]
    start = time.perf_counter()
    for chunk in chunks:
        connection.executemany(insert, chunk)
        connection.commit()
    elapsed = time.perf_counter() - start
    connection.close()
    return len(rows) / elapsed


def cellbench_samples_ddl(directory: Path) -> str:
    """The CREATE TABLE statement of cellbench's sample table on SQLite."""
    db = open_database(f"sqlite:///{directory / 'ddl.sqlite3'}")
    with db.engine.connect() as connection:
        sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'samples'"
        ).scalar_one()
    db.close()
    return str(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--rows-per-test", type=int, default=1000)
    parser.add_argument("--url", help="database URL for the writer (default: a new SQLite file)")
    parser.add_argument("--layouts", action="store_true", help="compare sample-table layouts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ddl = cellbench_samples_ddl(directory)
        rows = raw_rows(args.tests, args.rows_per_test)
        ours = "cellbench rowid table, primary key index"
        layouts = {ours: [ddl]}
        if args.layouts:
            body = ddl[ddl.index("(") + 1 : ddl.index("CONSTRAINT pk_samples")].rstrip(", \n\t")
            layouts["WITHOUT ROWID table clustered on the key"] = [
                f"CREATE TABLE samples ({body}, PRIMARY KEY (test_id, seq)) WITHOUT ROWID",
            ]
        rates = {}
        for number, (layout, create) in enumerate(layouts.items()):
            for key_order in (False, True):
                path = directory / f"raw-{number}-{key_order}.sqlite3"
                rate = rates[layout, key_order] = bench_raw(path, create, rows, key_order)
                order = "key order" if key_order else "arrival order"
                print(f"plain sqlite3 executemany, {layout}, {order}: {rate:,.0f} rows/s")
        del rows  # free the tuples before the writer runs
        url = args.url or f"sqlite:///{directory / 'writer.sqlite3'}"
        writer = bench_writer(url, args.tests, args.rows_per_test)
    if url.startswith("sqlite"):
        ratio = writer / rates[ours, True]
        print(f"SampleWriter / plain sqlite3 ceiling (cellbench table, key order): {ratio:.2f}")


if __name__ == "__main__":
    main()

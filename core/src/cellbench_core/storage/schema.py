"""The public database schema as SQLAlchemy tables (documented for other tools in docs/schema.md).

Units are SI and part of every column name. Current, power, ``ah`` and ``wh`` are positive when
charging. JSON columns hold UTF-8 JSON text. ``NULL`` in a measured column means "no valid value"
(a non-finite reading).

The rows written in waves across a station's tests (``samples``, ``sample_aux``, ``steps``,
``events``, ``test_positions``) carry no foreign key to ``tests``: PostgreSQL checks one by a
trigger per row (docs/schema.md, "Foreign keys"). ``samples`` and ``sample_aux`` have no index
besides their primary key either: they take every measurement, and each index costs insert
speed.
On SQLite both are ``WITHOUT ROWID`` tables, so a test's samples lie together in the file.

The Alembic migrations create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

from cellbench_core.storage.records import AUX_NAME_LENGTH

#: Constraint names are fixed so later migrations can name them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Alembic's bookkeeping table; named for cellbench so a shared server database stays unambiguous.
VERSION_TABLE = "cellbench_alembic_version"

#: Values of ``tests.status`` (the values of :class:`cellbench_core.events.TestStatus`).
TEST_STATUSES = ("running", "finished", "stopped", "failed", "interrupted")
#: Values of ``test_queue.status``: ``queued``, then ``running``, then how the test ended (or
#: ``cancelled`` before it started).
QUEUE_STATUSES = ("queued", "running", "finished", "stopped", "failed", "cancelled",
                  "interrupted")

NAME_LENGTH = 255
KIND_LENGTH = 64  # batteries.chemistry, events.kind
# Plan files can exceed the 64 KiB of a MySQL TEXT column.
LONG_TEXT = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# SQLite only auto-numbers a plain INTEGER primary key.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

batteries = Table(
    "batteries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("chemistry", String(KIND_LENGTH), nullable=False),
    Column("nominal_capacity_ah", Double, nullable=False),
    Column("nominal_voltage_v", Double),
    Column("voltage_max_v", Double),
    Column("voltage_min_v", Double),
    Column("current_max_charge_a", Double),
    Column("current_max_discharge_a", Double),
    Column("temperature_max_c", Double),
    Column("metadata", Text, nullable=False),
    Column("created_unix_s", Double, nullable=False),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("driver", String(NAME_LENGTH), nullable=False),
    Column("settings", Text, nullable=False),
)

tests = Table(
    "tests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("channel_id", Integer, nullable=False),  # no foreign key: docs/schema.md
    Column("battery_id", Integer, ForeignKey("batteries.id")),
    Column("plan_name", String(NAME_LENGTH), nullable=False),
    Column("plan_source", Text, nullable=False),
    Column("plan_text", LONG_TEXT, nullable=False),
    Column("status", String(16), nullable=False),
    Column("end_reason", Text),
    Column("start_unix_s", Double, nullable=False),
    Column("end_unix_s", Double),
    Column("sample_period_s", Double, nullable=False),
    Column("station", String(NAME_LENGTH), nullable=False),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in TEST_STATUSES) + ")", name="status"
    ),
)

samples = Table(
    "samples",
    metadata,
    Column("test_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("test_time_s", Double, nullable=False),
    Column("unix_time_s", Double, nullable=False),
    Column("step_time_s", Double, nullable=False),
    Column("voltage_v", Double),
    Column("current_a", Double),
    Column("power_w", Double),
    Column("temperature_c", Double),
    Column("step_index", Integer, nullable=False),
    Column("plan_line", Integer, nullable=False),
    Column("cycle", Integer, nullable=False),
    Column("ah", Double),
    Column("wh", Double),
)

sample_aux = Table(
    "sample_aux",
    metadata,
    Column("test_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(AUX_NAME_LENGTH), primary_key=True),
    Column("value", Double, nullable=False),
)

steps = Table(
    "steps",
    metadata,
    Column("test_id", Integer, primary_key=True, autoincrement=False),
    Column("step_no", Integer, primary_key=True, autoincrement=False),
    Column("step_index", Integer, nullable=False),
    Column("plan_line", Integer, nullable=False),
    Column("cycle", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("start_seq", BigInteger, nullable=False),
    Column("end_seq", BigInteger, nullable=False),
    Column("start_test_time_s", Double, nullable=False),
    Column("end_test_time_s", Double, nullable=False),
    Column("ah", Double),
    Column("wh", Double),
    Column("end_reason", Text, nullable=False),
    # What flowed in and out over the step (both positive) and the cell temperature's range;
    # NULL in rows written before schema revision 0004. The ``cycles`` view adds them up.
    Column("charge_ah", Double),
    Column("discharge_ah", Double),
    Column("charge_wh", Double),
    Column("discharge_wh", Double),
    Column("temperature_min_c", Double),
    Column("temperature_max_c", Double),
)

test_positions = Table(
    "test_positions",
    metadata,
    Column("test_id", Integer, primary_key=True, autoincrement=False),
    Column("step_no", Integer, nullable=False),
    Column("start_seq", BigInteger, nullable=False),
    Column("unix_time_s", Double, nullable=False),
    Column("state", LONG_TEXT, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("test_id", Integer),
    Column("unix_time_s", Double, nullable=False),
    Column("kind", String(KIND_LENGTH), nullable=False),
    Column("channel", String(NAME_LENGTH)),
    Column("message", Text, nullable=False),
    Column("data", Text, nullable=False),
    Index(None, "test_id"),
)

test_queue = Table(
    "test_queue",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("channel", Integer, nullable=False),
    Column("plan", LONG_TEXT, nullable=False),
    Column("plan_source", String(NAME_LENGTH)),
    Column("battery", String(NAME_LENGTH)),
    Column("name", String(NAME_LENGTH)),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("created_unix_s", Double, nullable=False),
    Column("started_unix_s", Double),
    Column("finished_unix_s", Double),
    Column("test_id", Integer, ForeignKey("tests.id")),
    Column("error", Text),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in QUEUE_STATUSES) + ")", name="status"
    ),
    Index(None, "status"),
)

#: Values of ``notify_outbox.status``: ``pending`` until its peer took it (``delivered``) or
#: refused it for good (``rejected``: retrying cannot help).
OUTBOX_STATUSES = ("pending", "delivered", "rejected")
EVENT_ID_LENGTH = 64

notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("notifier", String(KIND_LENGTH), nullable=False),
    Column("destination", String(NAME_LENGTH), nullable=False),
    Column("event_id", String(EVENT_ID_LENGTH), nullable=False),
    Column("created_unix_s", Double, nullable=False),
    Column("payload", LONG_TEXT, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_unix_s", Double, nullable=False),
    Column("finished_unix_s", Double),
    Column("last_error", Text),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in OUTBOX_STATUSES) + ")", name="status"
    ),
    UniqueConstraint("notifier", "destination", "event_id"),
    Index(None, "notifier", "status", "id"),
)

#: Who holds the database's station lease (one row; see storage/lease.py): the lock itself is
#: the backend's, this only names its holder.
station_leases = Table(
    "station_leases",
    metadata,
    Column("station", String(NAME_LENGTH), primary_key=True),
    Column("host", String(NAME_LENGTH), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("since_unix_s", Double, nullable=False),
)

#: Read-only views (created by migrations 0002 and 0004; not tables, so not in ``metadata``).
VIEWS = ("live_samples", "cycles")

#: The ``live_samples`` view: each running test's latest sample, with its channel's name.
LIVE_SAMPLES_VIEW = """
CREATE VIEW live_samples AS
SELECT t.id AS test_id, c.name AS channel, t.name AS test_name, t.station,
       s.seq, s.unix_time_s, s.test_time_s, s.step_time_s, s.voltage_v, s.current_a,
       s.power_w, s.temperature_c, s.step_index, s.plan_line, s.cycle, s.ah, s.wh
FROM tests t
JOIN channels c ON c.id = t.channel_id
JOIN samples s ON s.test_id = t.id
WHERE t.status = 'running'
  AND s.seq = (SELECT MAX(m.seq) FROM samples m WHERE m.test_id = t.id)
"""


def cycles_view(dialect: str, keys: tuple[str, ...] = ("test_id",)) -> str:
    """The ``CREATE VIEW cycles`` statement for a database of ``dialect``: one row per test
    (``keys``: a central database adds ``origin``) and cycle, summing its steps (docs/schema.md).

    Views hold no data, so a migration may take this text as it is today.
    """
    listed = {  # each step's end reason, in step order, joined by '; '
        "postgresql": "string_agg(end_reason, '; ' ORDER BY step_no)",
        "mysql": "GROUP_CONCAT(end_reason ORDER BY step_no SEPARATOR '; ')",
        "mariadb": "GROUP_CONCAT(end_reason ORDER BY step_no SEPARATOR '; ')",
    }.get(dialect, "group_concat(end_reason, '; ')")
    # SQLite's group_concat takes rows in the order its input has them.
    source = ("(SELECT * FROM steps ORDER BY step_no) AS steps" if dialect == "sqlite"
              else "steps")
    key = ", ".join(keys)
    return f"""
CREATE VIEW cycles AS
SELECT {key}, cycle,
       COUNT(*) AS steps,
       MIN(start_seq) AS start_seq, MAX(end_seq) AS end_seq,
       MIN(start_test_time_s) AS start_test_time_s, MAX(end_test_time_s) AS end_test_time_s,
       SUM(charge_ah) AS charge_ah, SUM(discharge_ah) AS discharge_ah,
       SUM(charge_wh) AS charge_wh, SUM(discharge_wh) AS discharge_wh,
       SUM(discharge_ah) / NULLIF(SUM(charge_ah), 0) AS coulombic_efficiency,
       SUM(discharge_wh) / NULLIF(SUM(charge_wh), 0) AS energy_efficiency,
       SUM(charge_wh) / NULLIF(SUM(charge_ah), 0) AS mean_charge_v,
       SUM(discharge_wh) / NULLIF(SUM(discharge_ah), 0) AS mean_discharge_v,
       MIN(temperature_min_c) AS temperature_min_c, MAX(temperature_max_c) AS temperature_max_c,
       {listed} AS end_reasons
FROM {source}
GROUP BY {key}, cycle
"""

#: Sample columns in table order, and which of them hold integers.
SAMPLE_COLUMNS = tuple(c.name for c in samples.columns)
SAMPLE_INT_COLUMNS = frozenset(c.name for c in samples.columns if isinstance(c.type, Integer))

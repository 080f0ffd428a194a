"""Range partitions by time of a PostgreSQL table: create them ahead, drop them past
retention, list them.

The parent is declared ``PARTITION BY RANGE (<a timestamptz column>)`` with a DEFAULT
partition ``<parent>_default`` (see ``controlplane/circuits/migrations/0005_traffic.py``).
Partitions cover one UTC day or one UTC month and are named ``<parent>_pYYYYMMDD`` or
``<parent>_pYYYYMM`` after their first day.

- :func:`ensure` creates the missing partitions covering ``[start, end)``. Rows the
  DEFAULT partition already holds in a new partition's range are moved into it: the
  partition is created as a standalone table ``LIKE`` the parent, the rows are moved
  out of the default and the table is attached, in one transaction, so creating a
  partition never fails on them. Attaching takes a SHARE UPDATE EXCLUSIVE lock on the
  parent (reads and writes of other partitions go on) and an ACCESS EXCLUSIVE lock on
  the default partition for the time of the move.
- :func:`drop_before` detaches and drops every partition that ends at or before the
  cutoff, and deletes the rows older than the cutoff from the DEFAULT partition.
- :func:`list` lists the range partitions in order.

Every lock is waited for at most :data:`LOCK_TIMEOUT_MS`; a partition that could not
be locked in time is skipped (logged) and tried again on the next call.

On SQLite tables are plain: :func:`ensure` and :func:`list` do nothing, and
:func:`drop_before` deletes the rows older than the cutoff (``column`` names the
column there).
"""

import builtins
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

logger = logging.getLogger(__name__)

Interval = Literal["day", "month"]
INTERVALS: tuple[Interval, ...] = ("day", "month")

#: Longest PostgreSQL identifier (bytes); a longer partition name would be truncated.
MAX_IDENTIFIER = 63
#: How long creating or dropping one partition waits for its locks, milliseconds.
LOCK_TIMEOUT_MS = 5000

_SUFFIX = {"day": re.compile(r"_p(\d{8})$"), "month": re.compile(r"_p(\d{6})$")}


@dataclass(frozen=True)
class Partition:
    """One range partition: its table name and the range ``[start, end)`` it holds."""

    name: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Dropped:
    """What :func:`drop_before` removed."""

    partitions: builtins.list[str]
    default_rows: int


def quote(name: str) -> str:
    """An identifier quoted for PostgreSQL and SQLite (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def floor(moment: datetime, interval: Interval) -> datetime:
    """The start (UTC) of the day or month holding ``moment``."""
    _check_interval(interval)
    moment = _utc(moment)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if interval == "day" else day.replace(day=1)


def following(start: datetime, interval: Interval) -> datetime:
    """The start of the day or month after the one starting at ``start``."""
    start = floor(start, interval)
    if interval == "day":
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def partition_name(parent: str, start: datetime, interval: Interval) -> str:
    """``<parent>_pYYYYMMDD`` (day) or ``<parent>_pYYYYMM`` (month) of the partition
    holding ``start``."""
    start = floor(start, interval)
    name = f"{parent}_p{start:%Y%m%d}" if interval == "day" else f"{parent}_p{start:%Y%m}"
    if len(name.encode()) > MAX_IDENTIFIER:
        raise ValueError(f"partition name {name!r} is longer than {MAX_IDENTIFIER} bytes")
    return name


def default_name(parent: str) -> str:
    """The DEFAULT partition's conventional name."""
    return f"{parent}_default"


def periods(start: datetime, end: datetime, interval: Interval) -> builtins.list[datetime]:
    """Starts of the days or months that cover ``[start, end)``."""
    starts = []
    at = floor(start, interval)
    end = _utc(end)
    while at < end:
        starts.append(at)
        at = following(at, interval)
    return starts


def list(parent: str, *, using: str = DEFAULT_DB_ALIAS) -> builtins.list[Partition]:
    """The range partitions of ``parent`` ordered by start (not the DEFAULT partition);
    empty on SQLite."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    _key_column(connection, parent)
    # The bound is rendered as text and cast back under the same session settings.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, b.bound[1]::timestamptz, b.bound[2]::timestamptz
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            CROSS JOIN LATERAL regexp_match(
                pg_get_expr(c.relpartbound, c.oid),
                '^FOR VALUES FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)$'
            ) AS b(bound)
            WHERE i.inhparent = %s::regclass AND b.bound IS NOT NULL
            ORDER BY 2
            """,
            [quote(parent)],
        )
        return [Partition(name, _utc(start), _utc(end)) for name, start, end in cursor.fetchall()]


def ensure(
    parent: str,
    start: datetime,
    end: datetime,
    interval: Interval,
    *,
    using: str = DEFAULT_DB_ALIAS,
) -> builtins.list[str]:
    """Create the partitions of ``parent`` missing to cover ``[start, end)``, one day or
    month each; the names of those created. A period that an existing partition already
    overlaps (of another size, made by hand) is left alone. Nothing on SQLite."""
    _check_interval(interval)
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    column = _key_column(connection, parent)
    existing = list(parent, using=using)
    created = []
    for period in periods(start, end, interval):
        period_end = following(period, interval)
        if any(p.start < period_end and period < p.end for p in existing):
            continue
        name = partition_name(parent, period, interval)
        try:
            moved = _create(connection, parent, column, name, period, period_end, using)
        except OperationalError as exc:
            if not _lock_timeout(exc):
                raise
            logger.warning("partition %s: not created, its locks were busy; next time", name)
            continue
        if moved is None:  # another session created it meanwhile
            continue
        created.append(name)
        existing.append(Partition(name, period, period_end))
        logger.info("partition %s created, %d rows moved from the default", name, moved)
    return created


def drop_before(
    parent: str,
    cutoff: datetime,
    interval: Interval,
    *,
    column: str | None = None,
    session: Mapping[str, str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> Dropped:
    """Detach and drop the partitions of ``parent`` named for ``interval`` that end at or
    before ``cutoff``, and delete the rows older than ``cutoff`` from its DEFAULT
    partition. On SQLite, delete the rows whose ``column`` (required there) is older than
    ``cutoff``. ``session`` names settings (``set_config``) that the transaction deleting
    rows holds, for a trigger that allows the delete only then."""
    _check_interval(interval)
    cutoff = _utc(cutoff)
    connection = connections[using]
    if connection.vendor != "postgresql":
        if column is None:
            raise ValueError("drop_before needs the column on a table without partitions")
        with transaction.atomic(using=using), connection.cursor() as cursor:
            _set_session(cursor, session)
            cursor.execute(
                f"DELETE FROM {quote(parent)} WHERE {quote(column)} < %s",
                [connection.ops.adapt_datetimefield_value(cutoff)],
            )
            return Dropped([], max(cursor.rowcount, 0))
    key = _key_column(connection, parent)
    if column is not None and column != key:
        raise ValueError(f"{parent} is partitioned by {key}, not {column}")
    dropped = []
    for partition in list(parent, using=using):
        if partition.end > cutoff or not _SUFFIX[interval].search(partition.name):
            continue
        try:
            with transaction.atomic(using=using), connection.cursor() as cursor:
                _set_lock_timeout(cursor)
                # Checks deferred by earlier writes of the caller's transaction, if any,
                # would keep the table from being dropped.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(
                    f"ALTER TABLE {quote(parent)} DETACH PARTITION {quote(partition.name)}"
                )
                cursor.execute(f"DROP TABLE {quote(partition.name)}")
        except OperationalError as exc:
            if not _lock_timeout(exc):
                raise
            logger.warning("partition %s: not dropped, its locks were busy; next time", partition)
            continue
        dropped.append(partition.name)
        logger.info("partition %s dropped", partition.name)
    rows = 0
    default = _default_partition(connection, parent)
    if default is not None:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            _set_session(cursor, session)
            cursor.execute(f"DELETE FROM {quote(default)} WHERE {quote(key)} < %s", [cutoff])
            rows = max(cursor.rowcount, 0)
    return Dropped(dropped, rows)


def _create(
    connection: BaseDatabaseWrapper,
    parent: str,
    column: str,
    name: str,
    start: datetime,
    end: datetime,
    using: str,
) -> int | None:
    """Create and attach one partition, moving its rows out of the default partition; the
    number of rows moved, or None when a table of that name exists already."""
    columns = ", ".join(quote(c) for c in _columns(connection, parent))
    with transaction.atomic(using=using), connection.cursor() as cursor:
        _set_lock_timeout(cursor)
        # The parent first (as ATTACH would), then the default: two sessions adding
        # partitions queue on the parent instead of deadlocking on the default.
        cursor.execute(f"LOCK TABLE ONLY {quote(parent)} IN SHARE UPDATE EXCLUSIVE MODE")
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [quote(name)])
        if cursor.fetchone()[0]:
            return None
        default = _default_partition(connection, parent)
        cursor.execute(f"CREATE TABLE {quote(name)} (LIKE {quote(parent)} INCLUDING ALL)")
        moved = 0
        if default is not None:
            cursor.execute(f"LOCK TABLE {quote(default)} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(
                f"WITH moved AS (DELETE FROM {quote(default)}"
                f" WHERE {quote(column)} >= %s AND {quote(column)} < %s RETURNING {columns})"
                f" INSERT INTO {quote(name)} ({columns}) SELECT {columns} FROM moved",
                [start, end],
            )
            moved = max(cursor.rowcount, 0)
        cursor.execute(
            f"ALTER TABLE {quote(parent)} ATTACH PARTITION {quote(name)}"
            " FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )
    return moved


def _key_column(connection: BaseDatabaseWrapper, parent: str) -> str:
    """The column ``parent`` is range-partitioned by (ValueError if it is not)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.attname
            FROM pg_partitioned_table p
            JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
            WHERE p.partrelid = to_regclass(%s) AND p.partstrat = 'r' AND p.partnatts = 1
            """,
            [quote(parent)],
        )
        row = cursor.fetchone()
    if row is None:
        raise ValueError(f"{parent} is not a table partitioned by range of one column")
    return str(row[0])


def _columns(connection: BaseDatabaseWrapper, parent: str) -> builtins.list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [quote(parent)],
        )
        return [str(row[0]) for row in cursor.fetchall()]


def _default_partition(connection: BaseDatabaseWrapper, parent: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c"
            " ON c.oid = p.partdefid WHERE p.partrelid = %s::regclass",
            [quote(parent)],
        )
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def _set_session(cursor: CursorWrapper, session: Mapping[str, str] | None) -> None:
    if session and cursor.db.vendor == "postgresql":
        for name, value in session.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


def _set_lock_timeout(cursor: CursorWrapper) -> None:
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{LOCK_TIMEOUT_MS}ms"])


def _lock_timeout(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == "55P03"  # lock_not_available


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return moment.astimezone(UTC)


def _check_interval(interval: str) -> None:
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")

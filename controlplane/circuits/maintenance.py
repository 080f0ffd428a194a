"""Upkeep of the time-partitioned tables, with :mod:`controlplane.core.partitions`:

- the traffic tables, every minute (``circuits.traffic_maintenance``, ``manage.py
  traffic_maintenance``): partitions made ahead, roll-ups, retention;
- the history tables, transitions and audit events, every hour
  (``circuits.history_maintenance``, ``manage.py history_maintenance``): monthly
  partitions made ahead, and retention, which the audit trail records.

One run of each at a time: a PostgreSQL advisory lock, taken without waiting; a run that
finds it taken does nothing. On SQLite the steps run unguarded (each statement waits for
the database's write lock, and running them twice gives the same rows).
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.utils import timezone

from controlplane.circuits import shadow
from controlplane.circuits.choices import AuditAction
from controlplane.circuits.models import (
    AuditEvent,
    Traffic,
    Traffic1h,
    Traffic1m,
    Traffic10s,
    Transition,
)
from controlplane.circuits.rollup import Rolled, rollup, watermarks
from controlplane.core import partitions
from controlplane.core.audit import Target, record_audit

logger = logging.getLogger(__name__)

#: The advisory lock held while a run goes on (``pg_try_advisory_lock(bigint)``).
LOCK_KEY = 0x5357_7472_6166_6963  # "SWtraffic"
#: The history maintenance's advisory lock.
HISTORY_LOCK_KEY = 0x5357_6869_7374_6F72  # "SWhistor"
#: The transaction setting under which the audit trail's trigger lets rows be deleted.
AUDIT_RETENTION_SETTING = "switchyard.audit_retention"


@dataclass(frozen=True)
class Table:
    """One resolution's table: its partitions' size, the setting of its retention in
    days, and the roll-up that reads it (its rows are kept until that has)."""

    model: type[Traffic]
    interval: partitions.Interval
    days_setting: str
    read_by: str | None


# Days for 10 s and 1 min (a few hundred thousand to millions of rows each, dropped a day
# at a time); months for 1 h (400 days of daily tables would be 400 tables).
TABLES = (
    Table(Traffic10s, "day", "SWITCHYARD_TRAFFIC_RAW_DAYS", "1m"),
    Table(Traffic1m, "day", "SWITCHYARD_TRAFFIC_MINUTE_DAYS", "1h"),
    Table(Traffic1h, "month", "SWITCHYARD_TRAFFIC_HOUR_DAYS", None),
)


@dataclass(frozen=True)
class Maintenance:
    """What one run did: partitions created, roll-ups, partitions dropped and rows
    deleted from the default partitions (or, on SQLite, the tables), per table."""

    created: dict[str, list[str]]
    rolled: list[Rolled]
    dropped: dict[str, list[str]]
    deleted: dict[str, int]

    def counts(self) -> dict[str, int]:
        return {
            "partitions_created": sum(len(names) for names in self.created.values()),
            "rows_rolled_up": sum(r.rows for r in self.rolled),
            "partitions_dropped": sum(len(names) for names in self.dropped.values()),
            "rows_deleted": sum(self.deleted.values()),
        }


def traffic_maintenance(
    now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS
) -> Maintenance | None:
    """Create the partitions of the retention window and SWITCHYARD_TRAFFIC_AHEAD_DAYS
    ahead (moving in what the default partitions hold of them), roll up, then drop what
    is past retention and rolled up. None when another run holds the lock."""
    with _exclusive(using, LOCK_KEY) as acquired:
        if not acquired:
            logger.info("traffic maintenance: another run is under way; skipped")
            return None
        now = now or timezone.now()
        ahead = now + timedelta(days=settings.SWITCHYARD_TRAFFIC_AHEAD_DAYS)
        created = {}
        for table in TABLES:
            name = table.model._meta.db_table
            start = now - timedelta(days=getattr(settings, table.days_setting))
            created[name] = partitions.ensure(name, start, ahead, table.interval, using=using)
            logger.info("traffic partitions of %s: %d created", name, len(created[name]))
        rolled = rollup(now, using=using)
        marks = watermarks(using=using)
        dropped, deleted = {}, {}
        for table in TABLES:
            name = table.model._meta.db_table
            cutoff = now - timedelta(days=getattr(settings, table.days_setting))
            if table.read_by is not None:
                # Never before the roll-up reading this table has had the rows.
                cutoff = min(cutoff, marks.get(table.read_by, cutoff))
            gone = partitions.drop_before(
                name, cutoff, table.interval, column="bucket", using=using
            )
            dropped[name], deleted[name] = gone.partitions, gone.default_rows
            logger.info(
                "traffic retention of %s (before %s): %d partitions dropped, %d rows deleted",
                name,
                cutoff,
                len(gone.partitions),
                gone.default_rows,
            )
        deleted.update(shadow.retention(now, using=using))
        return Maintenance(created, rolled, dropped, deleted)


@dataclass(frozen=True)
class HistoryTable:
    """One history table: the setting of its retention in days (0: kept for ever) and
    the audit action's wording of what it holds."""

    model: type[Model]
    days_setting: str
    holds: str


# Months: a year of transitions is 13 partitions, and a circuit's history, which reads
# every partition, stays a merge of 13 short index scans (docs/history.md).
HISTORY_INTERVAL: partitions.Interval = "month"
HISTORY_TABLES = (
    HistoryTable(Transition, "SWITCHYARD_TRANSITION_RETENTION_DAYS", "transitions"),
    HistoryTable(AuditEvent, "SWITCHYARD_AUDIT_RETENTION_DAYS", "audit events"),
)


@dataclass(frozen=True)
class HistoryMaintenance:
    """What one run did, per table: partitions created and dropped, rows deleted from the
    default partitions (or, on SQLite, the tables), and the retention cutoff (None:
    nothing is dropped from that table)."""

    created: dict[str, list[str]]
    dropped: dict[str, list[str]]
    deleted: dict[str, int]
    cutoffs: dict[str, datetime | None]

    def counts(self) -> dict[str, int]:
        return {
            "partitions_created": sum(len(names) for names in self.created.values()),
            "partitions_dropped": sum(len(names) for names in self.dropped.values()),
            "rows_deleted": sum(self.deleted.values()),
        }


def history_maintenance(
    now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS
) -> HistoryMaintenance | None:
    """Create the months of the history tables up to SWITCHYARD_HISTORY_AHEAD_DAYS ahead,
    then drop the months wholly past retention and delete older rows from the default
    partitions; each table whose history retention removed gets one audit event (by
    "system") saying what went. None when another run holds the lock."""
    with _exclusive(using, HISTORY_LOCK_KEY) as acquired:
        if not acquired:
            logger.info("history maintenance: another run is under way; skipped")
            return None
        now = now or timezone.now()
        ahead = now + timedelta(days=settings.SWITCHYARD_HISTORY_AHEAD_DAYS)
        created: dict[str, list[str]] = {}
        dropped: dict[str, list[str]] = {}
        deleted: dict[str, int] = {}
        cutoffs: dict[str, datetime | None] = {}
        for table in HISTORY_TABLES:
            name = table.model._meta.db_table
            # From the month before: rows that came while no run did stay in the default
            # partition until their month's partition is made.
            start = now - timedelta(days=31)
            created[name] = partitions.ensure(name, start, ahead, HISTORY_INTERVAL, using=using)
            days = getattr(settings, table.days_setting)
            if not days:
                dropped[name], deleted[name], cutoffs[name] = [], 0, None
                continue
            cutoff = now - timedelta(days=days)
            cutoffs[name] = cutoff
            gone = partitions.drop_before(
                name,
                cutoff,
                HISTORY_INTERVAL,
                column="at",
                session={AUDIT_RETENTION_SETTING: "on"},
                using=using,
            )
            dropped[name], deleted[name] = gone.partitions, gone.default_rows
            logger.info(
                "history retention of %s (before %s): %d partitions dropped, %d rows deleted",
                name,
                cutoff,
                len(gone.partitions),
                gone.default_rows,
            )
            if gone.partitions or gone.default_rows:
                _record_retention(table, days, cutoff, gone, now, using)
        return HistoryMaintenance(created, dropped, deleted, cutoffs)


def _record_retention(
    table: HistoryTable,
    days: int,
    cutoff: datetime,
    gone: partitions.Dropped,
    now: datetime,
    using: str,
) -> None:
    name = table.model._meta.db_table
    with transaction.atomic(using=using):
        record_audit(
            actor=None,
            action=AuditAction.HISTORY_RETENTION,
            target=Target("table", name, f"{table.holds} before {cutoff:%Y-%m-%d %H:%M}Z"),
            reason=f"{table.days_setting}={days}",
            after={
                "cutoff": cutoff.isoformat(),
                "partitions_dropped": gone.partitions,
                "rows_deleted": gone.default_rows,
            },
            now=now,
        )


@contextmanager
def _exclusive(using: str, key: int) -> Iterator[bool]:
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            _unlock(connection, key)


def _unlock(connection: BaseDatabaseWrapper, key: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    except DatabaseError:
        # A session lock must not go back to the pool with its connection: close it.
        logger.exception("maintenance: could not release its lock; closing")
        if connection.connection is not None:
            connection.connection.close()

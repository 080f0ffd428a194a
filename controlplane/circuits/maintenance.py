"""The traffic tables' upkeep, run every minute by Celery beat (``circuits.traffic_maintenance``)
and by ``manage.py traffic_maintenance``: partitions made ahead, roll-ups, retention.

One run at a time: a PostgreSQL advisory lock, taken without waiting; a run that finds
it taken does nothing. On SQLite the steps run unguarded (each statement waits for the
database's write lock, and running them twice gives the same rows).
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from controlplane.circuits.models import Traffic, Traffic1h, Traffic1m, Traffic10s
from controlplane.circuits.rollup import Rolled, rollup, watermarks
from controlplane.core import partitions

logger = logging.getLogger(__name__)

#: The advisory lock held while a run goes on (``pg_try_advisory_lock(bigint)``).
LOCK_KEY = 0x5357_7472_6166_6963  # "SWtraffic"


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
    with _exclusive(using) as acquired:
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
        return Maintenance(created, rolled, dropped, deleted)


@contextmanager
def _exclusive(using: str) -> Iterator[bool]:
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            _unlock(connection)


def _unlock(connection: BaseDatabaseWrapper) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    except DatabaseError:
        # A session lock must not go back to the pool with its connection: close it.
        logger.exception("traffic maintenance: could not release its lock; closing")
        if connection.connection is not None:
            connection.connection.close()

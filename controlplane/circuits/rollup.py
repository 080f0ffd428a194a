"""Roll-ups of the traffic rows: 10 s -> 1 min and 1 min -> 1 h (docs/traffic.md,
"Retention and roll-ups").

One set-based statement per window recomputes every target bucket of the window from
its source rows, counters summed and latency histograms added
(``switchyard_latency_sum``), and writes the totals over whatever the target held: running
a window again gives the same rows. Each resolution's watermark
(:class:`~controlplane.circuits.models.TrafficRollup`) says how far it has gone.

A minute is rolled up :data:`SETTLE` after it ends; an hour once its last minute is.
Every run computes again the buckets of the last :data:`LATE` (and whatever is behind
the watermark), so a report stored up to that late is counted in its minute and hour.
A run that has to catch up (the task was down) goes window by window and stops after
:data:`MAX_SECONDS`; the next run carries on.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from controlplane.circuits.models import Traffic, Traffic1h, Traffic1m, Traffic10s, TrafficRollup
from controlplane.circuits.sync.wire import TRAFFIC_COUNTERS as COUNTERS
from controlplane.core.partitions import quote

logger = logging.getLogger(__name__)

#: A bucket is rolled up this long after it ends, for the last reports of it to land.
SETTLE = timedelta(seconds=30)
#: Buckets this recent are computed again on every run: a report stored this late after
#: its minute still reaches the minute and the hour.
LATE = timedelta(minutes=15)
#: A run catching up stops starting new windows after this many seconds.
MAX_SECONDS = 40.0

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Level:
    """One roll-up: ``source`` rows into ``target`` buckets, ``chunk`` per statement."""

    resolution: str
    source: type[Traffic]
    target: type[Traffic]
    unit: str  # date_trunc's field of one target bucket
    chunk: timedelta
    # Days the source keeps (the first run starts that far back).
    source_days_setting: str


LEVELS = (
    Level("1m", Traffic10s, Traffic1m, "minute", timedelta(hours=1), "SWITCHYARD_TRAFFIC_RAW_DAYS"),
    Level("1h", Traffic1m, Traffic1h, "hour", timedelta(days=1), "SWITCHYARD_TRAFFIC_MINUTE_DAYS"),
)


@dataclass(frozen=True)
class Rolled:
    """One run of one roll-up: the buckets ``[start, through)`` it computed, the target
    rows it wrote (inserted or changed) and the statements it ran."""

    resolution: str
    start: datetime | None
    through: datetime
    rows: int
    windows: int


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """``moment`` rounded down to a multiple of ``step`` (UTC, whole minutes and hours)."""
    return moment - (moment - _EPOCH) % step


def watermarks(*, using: str = DEFAULT_DB_ALIAS) -> dict[str, datetime]:
    """Each roll-up's watermark: every bucket before it has been computed."""
    return dict(TrafficRollup.objects.using(using).values_list("resolution", "through"))


def rollup(now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS) -> list[Rolled]:
    """Run every roll-up once, finest first; what each did."""
    now = now or timezone.now()
    deadline = time.monotonic() + MAX_SECONDS
    ready = floor_to(now - SETTLE, timedelta(minutes=1))
    horizon = ready - LATE
    marks = watermarks(using=using)
    results = []
    for level in LEVELS:
        step = timedelta(seconds=level.target.step)
        end = floor_to(ready, step)
        through = marks.get(level.resolution)
        if through is None:
            days = getattr(settings, level.source_days_setting)
            start = floor_to(now - timedelta(days=days), step)
        else:
            start = min(through, floor_to(horizon, step))
        rolled = _run(level, start, end, through, deadline, using)
        results.append(rolled)
        marks[level.resolution] = rolled.through
        # The next level rolls up only what this one has finished.
        ready = rolled.through
        logger.info(
            "traffic roll-up %s: %s to %s, %d rows written in %d windows",
            level.resolution,
            rolled.start,
            rolled.through,
            rolled.rows,
            rolled.windows,
        )
    return results


def _run(
    level: Level,
    start: datetime,
    end: datetime,
    through: datetime | None,
    deadline: float,
    using: str,
) -> Rolled:
    rows = windows = 0
    sql = _statement(level, connections[using].vendor)
    at = start
    while at < end and (windows == 0 or time.monotonic() < deadline):
        window_end = min(at + level.chunk, end)
        with transaction.atomic(using=using):
            with connections[using].cursor() as cursor:
                bounds = [_param(at, using), _param(window_end, using)]
                if connections[using].vendor == "postgresql":
                    bounds = bounds * 2  # the counters' and the histograms' subqueries
                cursor.execute(sql, bounds)
                rows += max(cursor.rowcount, 0)
            if through is None or window_end > through:
                through = window_end
                TrafficRollup.objects.using(using).update_or_create(
                    resolution=level.resolution, defaults={"through": through}
                )
        windows += 1
        at = window_end
    if through is None:  # nothing to do on the first run: start from here
        through = end
        TrafficRollup.objects.using(using).update_or_create(
            resolution=level.resolution, defaults={"through": through}
        )
    return Rolled(level.resolution, start if windows else None, through, rows, windows)


def _statement(level: Level, vendor: str) -> str:
    """The roll-up of one window ``[%s, %s)`` of source buckets, in the vendor's SQL."""
    source = quote(level.source._meta.db_table)
    target = quote(level.target._meta.db_table)
    columns = ", ".join(("circuit_id", "bucket", *COUNTERS, "latency"))
    sums = ", ".join(f"sum({c})" for c in COUNTERS)
    named_sums = ", ".join(f"sum({c}) AS {c}" for c in COUNTERS)
    if vendor == "postgresql":
        bucket = f"date_trunc('{level.unit}', bucket, 'UTC')"
        where = "bucket >= %s AND bucket < %s"
    else:  # SQLite: the buckets are text, 'YYYY-MM-DD HH:MM:SS' in UTC
        pattern = {"minute": "%%Y-%%m-%%d %%H:%%M:00", "hour": "%%Y-%%m-%%d %%H:00:00"}
        bucket = f"strftime('{pattern[level.unit]}', bucket)"
        where = "datetime(bucket) >= %s AND datetime(bucket) < %s"
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*COUNTERS, "latency"))
    changed = " OR ".join(f"{target}.{c} <> excluded.{c}" for c in (*COUNTERS, "latency"))
    conflict = f" ON CONFLICT (circuit_id, bucket) DO UPDATE SET {updates} WHERE {changed}"
    if vendor == "postgresql":
        # The histograms expanded to (key, count) rows and summed by one hash aggregate
        # (built-in functions only): several times faster than folding jsonb values
        # with switchyard_latency_sum row by row. The window's bounds come twice.
        return (
            f"INSERT INTO {target} ({columns})"
            f" SELECT c.circuit_id, c.b, {', '.join(f'c.{n}' for n in COUNTERS)},"
            " COALESCE(h.latency, '{}')"
            f" FROM (SELECT circuit_id, {bucket} AS b, {named_sums} FROM {source}"
            f" WHERE {where} GROUP BY 1, 2) AS c"
            " LEFT JOIN (SELECT circuit_id, b, jsonb_object_agg(k, n) AS latency"
            f" FROM (SELECT circuit_id, {bucket} AS b, e.key AS k, sum(e.value::bigint) AS n"
            f" FROM {source}, jsonb_each_text(latency) AS e WHERE {where} GROUP BY 1, 2, 3)"
            " AS x GROUP BY 1, 2) AS h ON h.circuit_id = c.circuit_id AND h.b = c.b"
            f"{conflict}"
        )
    return (
        f"INSERT INTO {target} ({columns})"
        f" SELECT circuit_id, {bucket}, {sums}, switchyard_latency_sum(latency)"
        f" FROM {source} WHERE {where} GROUP BY 1, 2{conflict}"
    )


def _param(moment: datetime, using: str) -> datetime | str:
    if connections[using].vendor == "postgresql":
        return moment
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

"""Traffic series of a circuit or a service (docs/traffic.md, "Series API").

A step's figures are read from the coarsest traffic table whose buckets divide it: hours
where the hourly roll-up has got to, minutes where the minute roll-up has, 10-second rows
for the rest. Counters are added up per step in the database, the latency histograms
here (bucket by bucket: faster than expanding them in SQL), then:

* ``calls`` and ``rejected``: per second over the step (over the part of it that has
  passed, for the step holding ``now``);
* ``failure_rate``: failed calls over calls that ran, in percent;
* ``p50``/``p90``/``p99``: from the step's merged histogram (:mod:`breakers.latency`:
  within 5 % of the exact percentile of the calls).

A step without any row is ``None``: no instance reported anything in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from breakers.latency import percentiles
from controlplane.circuits.choices import CircuitState
from controlplane.circuits.models import (
    Instance,
    Traffic,
    Traffic1h,
    Traffic1m,
    Traffic10s,
    Transition,
)
from controlplane.circuits.rollup import watermarks

#: Metric -> unit.
METRICS: dict[str, str] = {
    "calls": "1/s",
    "failure_rate": "%",
    "p50": "s",
    "p90": "s",
    "p99": "s",
    "rejected": "1/s",
}
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
#: The steps a default picks from (seconds); any multiple of 10 may be asked for. From
#: 10 minutes it goes to an hour: a longer step is read from the hourly roll-up.
STEPS = (10, 30, 60, 120, 300, 600, 3600, 7200, 21600, 43200, 86400)
MIN_STEP, MAX_STEP = 10, 86400
#: Points one answer holds at most.
MAX_POINTS = 1000
#: The longest range one answer covers (the hourly retention's bound).
MAX_RANGE = timedelta(days=400)
DEFAULT_RANGE = timedelta(hours=1)
#: Transitions read for the bands of one answer at most (the rest of the range has none).
MAX_BAND_TRANSITIONS = 20_000
#: How bad a state is, for the bands: the worst state of any instance at each moment.
SEVERITY = {
    CircuitState.OPEN: 4,
    CircuitState.FORCED_OPEN: 3,
    CircuitState.HALF_OPEN: 2,
    CircuitState.FORCED_CLOSED: 1,
    CircuitState.CLOSED: 0,
}


class RangeError(ValueError):
    """A range or step the series cannot answer: ``field`` names the parameter."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Window:
    """The steps asked for: ``start`` (aligned to the step) up to ``end``."""

    start: datetime
    end: datetime
    step: int

    @property
    def times(self) -> list[int]:
        first = int(self.start.timestamp())
        count = math.ceil((self.end - self.start).total_seconds() / self.step)
        return [first + i * self.step for i in range(count)]


def window(
    start: datetime | None, end: datetime | None, step: int | None, now: datetime | None = None
) -> Window:
    """The window of ``[start, end)`` by ``step`` (defaults: the last hour, the smallest
    of :data:`STEPS` that gives at most :data:`MAX_POINTS` points); RangeError naming the
    parameter when it cannot be answered."""
    now = now or timezone.now()
    end = end or now
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise RangeError("from", "must be before to")
    if end - start > MAX_RANGE:
        raise RangeError("from", f"the range must be at most {MAX_RANGE.days} days")
    seconds = (end - start).total_seconds()
    if step is None:
        step = next((s for s in STEPS if seconds / s <= MAX_POINTS), MAX_STEP)
    elif not MIN_STEP <= step <= MAX_STEP or step % MIN_STEP:
        raise RangeError(
            "step", f"must be a multiple of {MIN_STEP} from {MIN_STEP} to {MAX_STEP}, got {step}"
        )
    aligned = datetime.fromtimestamp(math.floor(start.timestamp() / step) * step, tz=UTC)
    if math.ceil((end - aligned).total_seconds() / step) > MAX_POINTS:
        raise RangeError(
            "step", f"gives more than {MAX_POINTS} points over this range: use a larger step"
        )
    return Window(aligned, end, step)


# -- where each part of a window is read from ---------------------------------------------

_LEVELS: tuple[tuple[type[Traffic], str | None], ...] = (
    (Traffic1h, "1h"),
    (Traffic1m, "1m"),
    (Traffic10s, None),
)


def sources(w: Window) -> list[tuple[type[Traffic], datetime, datetime]]:
    """(table, from, to) pieces covering the window: each from the coarsest table whose
    bucket divides the step, as far as its roll-up has got, then the finer ones."""
    marks = watermarks()
    pieces: list[tuple[type[Traffic], datetime, datetime]] = []
    start = w.start
    for model, level in _LEVELS:
        if model.step > w.step or w.step % model.step or start >= w.end:
            continue
        through = w.end if level is None else min(w.end, marks.get(level, start))
        if through > start:
            pieces.append((model, start, through))
            start = through
    return pieces


# -- reading -----------------------------------------------------------------------------------

_EPOCH = {
    "postgresql": "floor(extract(epoch from bucket) / %s) * %s",
    "sqlite": "(CAST(strftime('%%s', bucket) AS integer) / %s) * %s",
}


def _params(moment: datetime) -> Any:
    if connection.vendor == "sqlite":
        return connection.ops.adapt_datetimefield_value(moment)
    return moment


def _ids(circuit_ids: Sequence[int]) -> str:
    return ", ".join(["%s"] * len(circuit_ids))


def _counters(
    table: str, circuit_ids: Sequence[int], start: datetime, end: datetime, step: int
) -> Iterable[tuple[int, int, int, int]]:
    epoch = _EPOCH[connection.vendor]
    sql = (
        f"SELECT {epoch} AS t, sum(calls), sum(failures), sum(rejected) FROM {table} "
        f"WHERE circuit_id IN ({_ids(circuit_ids)}) AND bucket >= %s AND bucket < %s "
        "GROUP BY 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [step, step, *circuit_ids, _params(start), _params(end)])
        for t, calls, failures, rejected in cursor.fetchall():
            yield int(t), int(calls), int(failures), int(rejected)


def _latency(
    table: str, circuit_ids: Sequence[int], start: datetime, end: datetime, step: int
) -> Iterable[tuple[int, str]]:
    """(step, histogram as JSON text) of every row: added up here, which is several
    times faster than expanding the histograms in SQL (``jsonb_each``)."""
    epoch = _EPOCH[connection.vendor]
    sql = (
        f"SELECT {epoch} AS t, CAST(latency AS text) FROM {table} "
        f"WHERE circuit_id IN ({_ids(circuit_ids)}) AND bucket >= %s AND bucket < %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [step, step, *circuit_ids, _params(start), _params(end)])
        for t, text in cursor.fetchall():
            yield int(t), text


def read(
    circuit_ids: Sequence[int], metrics: Sequence[str], w: Window, now: datetime | None = None
) -> dict[str, Any]:
    """``{"times", "series", "units", "partial_from"}`` of ``metrics`` over the window."""
    now = now or timezone.now()
    totals: dict[int, list[int]] = {}
    histograms: dict[int, dict[str, int]] = {}
    wants_latency = any(m in QUANTILES for m in metrics)
    if circuit_ids:
        for model, start, end in sources(w):
            table = connection.ops.quote_name(model._meta.db_table)
            for t, calls, failures, rejected in _counters(table, circuit_ids, start, end, w.step):
                row = totals.setdefault(t, [0, 0, 0])
                row[0] += calls
                row[1] += failures
                row[2] += rejected
            if wants_latency:
                for t, text in _latency(table, circuit_ids, start, end, w.step):
                    h = histograms.setdefault(t, {})
                    for key, count in orjson.loads(text).items():
                        h[key] = h.get(key, 0) + count
    times = w.times
    now_s = now.timestamp()
    series: dict[str, list[float | None]] = {m: [] for m in metrics}
    quantiles = [m for m in metrics if m in QUANTILES]
    for t in times:
        found = totals.get(t)
        seconds = max(1.0, min(float(w.step), now_s - t))
        merged = histograms.get(t, {})
        latencies = dict(
            zip(
                quantiles,
                percentiles(
                    {int(k): n for k, n in merged.items()}, [QUANTILES[m] for m in quantiles]
                ),
                strict=True,
            )
        )
        for metric in metrics:
            value: float | None
            if found is None:
                value = None
            elif metric == "calls":
                value = found[0] / seconds
            elif metric == "rejected":
                value = found[2] / seconds
            elif metric == "failure_rate":
                value = 100.0 * found[1] / found[0] if found[0] else None
            else:
                value = latencies[metric]
            series[metric].append(None if value is None else round(value, 6))
    partial = next((t for t in times if t + w.step > now_s), None)
    return {
        "times": times,
        "series": series,
        "units": {m: METRICS[m] for m in metrics},
        "partial_from": partial,
    }


def bands(circuit_id: int, w: Window) -> list[dict[str, Any]]:
    """The periods of the window while at least one instance of the circuit was not
    closed, each with the worst state any instance was in."""
    start, end = w.start, w.end
    states: dict[int, str] = {}
    before = Transition.objects.filter(
        circuit_id=circuit_id, instance=OuterRef("pk"), at__lt=start
    ).order_by("-at", "-id")
    for pk, state in (
        Instance.objects.filter(transitions__circuit_id=circuit_id, transitions__at__lt=start)
        .distinct()
        .annotate(state=Subquery(before.values("to_state")[:1]))
        .values_list("pk", "state")
    ):
        if state:
            states[pk] = state
    changes = (
        Transition.objects.filter(circuit_id=circuit_id, at__gte=start, at__lt=end)
        .order_by("at", "id")
        .values_list("instance_id", "to_state", "at")[:MAX_BAND_TRANSITIONS]
    )

    def worst() -> str:
        return max(states.values(), key=lambda s: SEVERITY.get(s, 0), default=CircuitState.CLOSED)

    out: list[dict[str, Any]] = []
    current, since = worst(), start
    for instance_id, to_state, at in changes:
        states[instance_id] = to_state
        state = worst()
        if state != current:
            if current != CircuitState.CLOSED and at > since:
                out.append(_band(since, at, current))
            current, since = state, at
    if current != CircuitState.CLOSED:
        out.append(_band(since, end, current))
    return out


def _band(start: datetime, end: datetime, state: str) -> dict[str, Any]:
    return {"from": int(start.timestamp()), "to": math.ceil(end.timestamp()), "state": state}

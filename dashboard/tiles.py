"""Tile data of the fleet overview, computed in a constant number of queries.

The fleet state, its counts and the circuit's rates come from
``controlplane.circuits.fleet``; this module only adds the figures a tile shows (window
failure rate, time in state, next probe, sparkline), formats them (``dashboard.formats``,
so the page and its live updates show the same strings) and the sort, filter and page
of the overview.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connection, transaction
from django.db.models import (
    Avg,
    Case,
    F,
    IntegerField,
    Max,
    Min,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils import timezone

from breakers.wire import format_timestamp
from controlplane.circuits.access import Scope, team_q
from controlplane.circuits.choices import SEVERITY_ORDER, FleetState
from controlplane.circuits.fleet import live_snapshots, summary, with_fleet_state, with_rates
from controlplane.circuits.models import Circuit, Transition
from dashboard import formats

# Sort keys of the overview, as they appear in the URL (?sort=...).
SORTS: dict[str, str] = {
    "worst": "worst first",
    "name": "name",
    "failure_rate": "window failure rate",
    "volume": "volume (calls/s)",
}
# Fleet states in the order "worst first" shows them (unknown last).
STATE_RANK: dict[str, int] = {state: i for i, state in enumerate(SEVERITY_ORDER)} | {
    FleetState.UNKNOWN: len(SEVERITY_ORDER)
}
PAGE_SIZE = 500
SPARK_POINTS = 20
SPARK_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Filters:
    """The overview's filters and sort, parsed from the query string."""

    service: str = ""
    state: str = ""
    name: str = ""
    sort: str = "worst"
    page: int = 1

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        """Parse a QueryDict; unknown values fall back to "no filter" (a shared link never 400s)."""
        state = query.get("state", "").strip()
        sort = query.get("sort", "worst").strip()
        try:
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            page = 1
        return cls(
            service=query.get("service", "").strip()[:200],
            state=state if state in FleetState.values else "",
            name=query.get("name", "").strip()[:200],
            sort=sort if sort in SORTS else "worst",
            page=page,
        )


@contextmanager
def without_jit() -> Iterator[None]:
    """Run the block's queries with PostgreSQL's JIT off.

    The fleet-state CASE repeats its override subquery, which inflates the planner's
    cost estimate past ``jit_above_cost``: at 5,000 circuits JIT compilation took about
    0.7 s of a query that runs in 40 ms without it.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        yield


def annotated(qs: QuerySet[Circuit], now: datetime) -> QuerySet[Circuit]:
    """Circuits with fleet state and rates (from fleet.py) and the live figures a tile shows."""
    live = live_snapshots(now)
    live_open = live & Q(snapshots__state=FleetState.OPEN)
    since = {
        f"since_{state}": Min("snapshots__state_since", filter=live & Q(snapshots__state=state))
        for state in SEVERITY_ORDER
    }
    return (
        with_rates(with_fleet_state(qs, now), now)
        .select_related("service__team")
        .annotate(
            # The mean of the live breakers' own window failure rates (what the breakers
            # trip on), not failures over calls since the last sync.
            failure_rate=Avg("snapshots__failure_rate", filter=live),
            # Next probe ~ the latest open report + the shortest wait it announced (plain
            # aggregates: interval arithmetic differs between PostgreSQL and SQLite).
            probe_in=Min("snapshots__retry_after", filter=live_open),
            reported_at=Max("snapshots__updated_at", filter=live_open),
            **since,
        )
        .annotate(
            rank=Case(
                *[When(fleet_state=s, then=Value(r)) for s, r in STATE_RANK.items()],
                default=Value(len(STATE_RANK)),
                output_field=IntegerField(),
            )
        )
    )


def filtered(filters: Filters, now: datetime, teams: Scope = None) -> QuerySet[Circuit]:
    """The overview's circuits of ``teams`` (None: all), filtered and sorted as the
    query string asks."""
    # Any: the filters below name annotations that the type stubs cannot see.
    qs: Any = Circuit.objects.filter(team_q(teams, "service__team"))
    if filters.service:
        qs = qs.filter(service__name=filters.service)
    if filters.name:
        qs = qs.filter(name__icontains=filters.name)
    qs = annotated(qs, now)
    if filters.state:
        qs = qs.filter(fleet_state=filters.state)
    orders: dict[str, list[Any]] = {
        "worst": ["rank", "service__name", "name"],
        "name": ["service__name", "name"],
        "failure_rate": [F("failure_rate").desc(nulls_last=True), "service__name", "name"],
        "volume": [F("call_rate").desc(nulls_last=True), "service__name", "name"],
    }
    return qs.order_by(*orders[filters.sort])


_SPARKLINES = """
SELECT c.id, t.failure_rate FROM unnest(%s::bigint[]) AS c(id)
CROSS JOIN LATERAL (
    SELECT at, id, failure_rate FROM circuits_transition
    WHERE circuit_id = c.id AND at >= %s AND failure_rate IS NOT NULL
    ORDER BY at DESC, id DESC LIMIT %s
) AS t
ORDER BY c.id, t.at, t.id
"""


def sparklines(circuit_ids: list[int], now: datetime) -> dict[int, list[float]]:
    """Recent failure rates per circuit (oldest first), from the transition history.

    One query for any number of circuits: the newest SPARK_POINTS per circuit. On
    PostgreSQL a LATERAL join reads each circuit's newest rows from its history index
    (4x faster for a page of 500 tiles than numbering every recent row); elsewhere a
    window function.
    """
    if not circuit_ids:
        return {}
    since = now - SPARK_WINDOW
    rows: Iterable[tuple[int, float | None]]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_SPARKLINES, [list(circuit_ids), since, SPARK_POINTS])
            rows = cursor.fetchall()
    else:
        rows = (
            Transition.objects.filter(
                circuit_id__in=circuit_ids, at__gte=since, failure_rate__isnull=False
            )
            .annotate(
                n=Window(RowNumber(), partition_by=[F("circuit_id")], order_by=[F("at").desc()])
            )
            .filter(n__lte=SPARK_POINTS)
            .order_by("circuit_id", "at")
            .values_list("circuit_id", "failure_rate")
        )
    points: dict[int, list[float]] = defaultdict(list)
    for circuit_id, rate in rows:
        if rate is not None:
            points[circuit_id].append(rate)
    return points


def spark_path(points: list[float], width: int = 80, height: int = 20) -> str:
    """SVG polyline points for failure rates in [0, 1]; empty for fewer than 2 points."""
    if len(points) < 2:
        return ""
    step = width / (len(points) - 1)
    return " ".join(
        f"{i * step:.1f},{height - max(0.0, min(1.0, p)) * height:.1f}"
        for i, p in enumerate(points)
    )


def _circuit_url() -> Callable[[int], str]:
    """The circuit page's URL for an id: reversed once per page rather than per tile
    (500 reverses cost about a tenth of the overview's render)."""
    head, tail = reverse("dashboard:circuit", args=[0]).rsplit("/0/", 1)
    return lambda pk: f"{head}/{pk}/{tail}"


def tile(
    circuit: Any,
    now: datetime,
    spark: list[float] | None = None,
    url: Callable[[int], str] | None = None,
) -> dict[str, Any]:
    """Everything one tile shows, as plain JSON-able values (pages and the socket).

    ``circuit`` is a Circuit row from :func:`annotated` (fleet state, rates, probe time).
    """
    state = circuit.fleet_state
    override = circuit.active_override_list[0] if circuit.active_override_list else None
    if override is not None:
        since = override.created_at
    elif state != FleetState.UNKNOWN:
        since = getattr(circuit, f"since_{state}", None)
    else:
        since = None
    probe_at = None
    if circuit.probe_in is not None and circuit.reported_at is not None and state == "open":
        probe_at = max(now, circuit.reported_at + timedelta(seconds=circuit.probe_in))
    rate = circuit.failure_rate
    team = circuit.service.team.name if circuit.service.team else ""
    label = FleetState(state).label
    state_summary = formats.state_label(summary(circuit))
    points = list(spark or [])
    if rate is not None:
        points.append(rate)
    return {
        "id": circuit.pk,
        "url": (url or _circuit_url())(circuit.pk),
        "key": f"{circuit.service.name}/{circuit.name}",
        "service": circuit.service.name,
        "team": team,
        "name": circuit.name,
        "state": state,
        "label": label,
        "summary": state_summary,
        "failure_rate": rate,
        "call_rate": circuit.call_rate,
        "rejected_rate": circuit.rejected_rate,
        "since": format_timestamp(since),
        "probe_at": format_timestamp(probe_at),
        "spark": spark_path(points),
        "forced": override is not None,
        # What the tile shows, by its data-field: the page renders these strings and
        # live.js places them as they are.
        "text": {
            "label": label,
            "summary": state_summary,
            "failure_rate": formats.pct(rate),
            "call_rate": formats.per_second(circuit.call_rate),
            "rejected_rate": formats.per_second(circuit.rejected_rate),
            "since": formats.since(since, now),
            "probe": formats.until(probe_at, now),
            # Beside the service's name, above its tiles (also above a tile added live).
            "team": formats.team_label(team),
        },
    }


def tiles_for(circuits: list[Circuit], now: datetime) -> list[dict[str, Any]]:
    """Tiles of annotated circuits, with sparklines (one more query)."""
    spark = sparklines([c.pk for c in circuits], now)
    url = _circuit_url()
    return [tile(c, now, spark.get(c.pk), url) for c in circuits]


def overview_page(
    filters: Filters, now: datetime | None = None, teams: Scope = None
) -> tuple[Page, list[dict]]:
    """One page of tiles for ``filters`` and ``teams`` (count, page, overrides,
    sparklines: 4 queries)."""
    now = now or timezone.now()
    with without_jit():
        paginator = Paginator(filtered(filters, now, teams), PAGE_SIZE)
        page = paginator.get_page(filters.page)
        return page, tiles_for(list(page.object_list), now)


def tiles_by_id(
    ids: list[int], now: datetime | None = None, teams: Scope = None
) -> list[dict[str, Any]]:
    """Fresh tiles of these circuits, those of ``teams`` only (what the socket pushes
    after events)."""
    now = now or timezone.now()
    circuits = Circuit.objects.filter(pk__in=ids).filter(team_q(teams, "service__team"))
    with without_jit():
        return tiles_for(list(annotated(circuits, now)), now)

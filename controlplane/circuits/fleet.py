"""Fleet state of circuits, computed in SQL (one query for any number of circuits).

A circuit's fleet state is its override if one is in force, else the worst state among
its live instances (forced_open > open > half_open > forced_closed > closed), else
"unknown" when no instance reported it within the live window.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from controlplane.circuits.choices import SEVERITY_ORDER, FleetState
from controlplane.circuits.desired import active_overrides
from controlplane.circuits.models import Circuit

STATE_COUNT_FIELDS: dict[str, str] = {state: f"n_{state}" for state in SEVERITY_ORDER}


def live_window() -> timedelta:
    """How recently an instance must have reported a circuit to count as live."""
    return timedelta(seconds=settings.SWITCHYARD_POLL_INTERVAL * settings.SWITCHYARD_LIVE_INTERVALS)


def live_cutoff(now: datetime | None = None) -> datetime:
    """Reports older than this are not live."""
    return (now or timezone.now()) - live_window()


def with_fleet_state(qs: QuerySet[Circuit], now: datetime | None = None) -> QuerySet[Circuit]:
    """Annotate circuits with ``fleet_state``, ``instances_live`` and ``n_<state>`` counts.

    Also prefetches the override in force as ``active_override_list`` (0 or 1 item).
    """
    now = now or timezone.now()
    live = Q(snapshots__updated_at__gte=live_cutoff(now))
    override_state = active_overrides(now).filter(circuit=OuterRef("pk")).values("state")[:1]
    counts = {
        field: Count("snapshots", filter=live & Q(snapshots__state=state))
        for state, field in STATE_COUNT_FIELDS.items()
    }
    worst = [
        When(**{f"{field}__gt": 0}, then=Value(state))
        for state, field in STATE_COUNT_FIELDS.items()
    ]
    return (
        qs.annotate(
            override_state=Subquery(override_state, output_field=CharField()),
            instances_live=Count("snapshots", filter=live),
            **counts,
        )
        .annotate(
            fleet_state=Case(
                When(override_state__isnull=False, then=F("override_state")),
                *worst,
                default=Value(FleetState.UNKNOWN),
                output_field=CharField(),
            )
        )
        .prefetch_related(
            Prefetch(
                "overrides",
                queryset=active_overrides(now).select_related("created_by"),
                to_attr="active_override_list",
            )
        )
    )


def state_counts(circuit: Circuit) -> dict[str, int]:
    """Live instances per state of an annotated circuit."""
    return {state: getattr(circuit, field) for state, field in STATE_COUNT_FIELDS.items()}


def summary(circuit: Circuit) -> str:
    """Human form of an annotated circuit's fleet state, e.g. "open on 3 of 12"."""
    state = circuit.fleet_state
    total = circuit.instances_live
    if state == FleetState.UNKNOWN:
        return "no live instance"
    in_state = getattr(circuit, STATE_COUNT_FIELDS[state])
    if circuit.override_state:
        return f"{state} by override (applied on {in_state} of {total})"
    return f"{state} on {in_state} of {total}"

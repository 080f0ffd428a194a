"""Fleet state of circuits, computed in SQL (one query for any number of circuits).

The annotation is ``Circuit.objects.with_fleet_state()`` (querysets.py); this module
reads the annotated rows.

A circuit's fleet state is its override if one is in force, else the worst state among
its live instances (forced_open > open > half_open > forced_closed > closed), else
"unknown" when no instance that has a snapshot of it synced within the live window.
An instance is live by its ``last_seen`` (every sync moves it), never by the
``updated_at`` of its snapshot rows.
"""

from datetime import datetime

from django.db.models import QuerySet

from controlplane.circuits.choices import FleetState
from controlplane.circuits.models import Circuit
from controlplane.circuits.querysets import STATE_COUNT_FIELDS as STATE_COUNT_FIELDS
from controlplane.circuits.querysets import live_cutoff as live_cutoff
from controlplane.circuits.querysets import live_snapshots as live_snapshots
from controlplane.circuits.querysets import live_window as live_window


def with_fleet_state(qs: QuerySet[Circuit], now: datetime | None = None) -> QuerySet[Circuit]:
    """``qs.with_fleet_state(now)``: see ``CircuitQuerySet.with_fleet_state``."""
    return qs.with_fleet_state(now)  # type: ignore[attr-defined]


def with_rates(qs: QuerySet[Circuit], now: datetime | None = None) -> QuerySet[Circuit]:
    """``qs.with_rates(now)``: see ``CircuitQuerySet.with_rates``."""
    return qs.with_rates(now)  # type: ignore[attr-defined]


def rate(delta: int, seconds: float | None) -> float | None:
    """One snapshot's counter growth per second; None when the seconds are unknown or 0."""
    return delta / seconds if seconds else None


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

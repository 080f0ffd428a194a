"""Reusable filters of the circuits models, as QuerySet methods (``Model.objects.<name>()``).

Imported by models.py, so it names the models only through ``self.model``.
"""

from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    FilteredRelation,
    FloatField,
    Max,
    Prefetch,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.utils import timezone

from controlplane.circuits.choices import SEVERITY_ORDER, FleetState

STATE_COUNT_FIELDS: dict[str, str] = {state: f"n_{state}" for state in SEVERITY_ORDER}


def live_window() -> timedelta:
    """How recently an instance must have synced for its snapshots to count as live."""
    return timedelta(seconds=settings.SWITCHYARD_POLL_INTERVAL * settings.SWITCHYARD_LIVE_INTERVALS)


def live_cutoff(now: datetime | None = None) -> datetime:
    """Instances whose ``last_seen`` is older than this are not live (nor their snapshots)."""
    return (now or timezone.now()) - live_window()


def live_snapshots(now: datetime | None = None, prefix: str = "snapshots__") -> Q:
    """Snapshots of live instances: liveness is the instance's last sync, whatever the
    row's own ``updated_at`` (a row is rewritten only when its breaker changes)."""
    return Q(**{f"{prefix}instance__last_seen__gte": live_cutoff(now)})


def per_second(delta: str, prefix: str = "snapshots__") -> Case:
    """A snapshot's ``delta`` counter over the seconds it covers; NULL when unknown or 0."""
    return Case(
        When(
            **{f"{prefix}delta_seconds__gt": 0},
            then=Cast(f"{prefix}{delta}", FloatField()) / F(f"{prefix}delta_seconds"),
        ),
        default=None,
        output_field=FloatField(),
    )


class OverrideQuerySet(QuerySet):
    """Filters of overrides: not ended, in force, of a service."""

    def not_ended(self) -> "OverrideQuerySet":
        """Not ended yet (some may be past their expiry: expiry ends them lazily)."""
        return self.filter(ended_at__isnull=True)

    def in_force(self, now: datetime | None = None) -> "OverrideQuerySet":
        """In force at ``now``: not ended and not past their expiry."""
        now = now or timezone.now()
        return self.not_ended().filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))

    def of_service(self, service_id: int) -> "OverrideQuerySet":
        """Overrides of the circuits of one service."""
        return self.filter(circuit__service_id=service_id)


class DrillQuerySet(QuerySet):
    """Filters of drills: running at a time, of a service."""

    def running(self, now: datetime | None = None) -> "DrillQuerySet":
        """Running at ``now``: not ended and not past their end (agents release at it)."""
        now = now or timezone.now()
        return self.filter(ended_at__isnull=True, ends_at__gt=now)

    def of_service(self, service_id: int) -> "DrillQuerySet":
        """Drills of the circuits of one service."""
        return self.filter(circuit__service_id=service_id)


class InstanceQuerySet(QuerySet):
    """Filters of agent instances."""

    def live(self, now: datetime | None = None) -> "InstanceQuerySet":
        """Instances seen within the live window."""
        return self.filter(last_seen__gte=live_cutoff(now))

    def not_live(self, now: datetime | None = None) -> "InstanceQuerySet":
        """Instances not seen within the live window."""
        return self.exclude(last_seen__gte=live_cutoff(now))


class CircuitQuerySet(QuerySet):
    """Filters and annotations of circuits."""

    def for_desired_state(self) -> "CircuitQuerySet":
        """Only what a desired state needs: name, service and current config."""
        return self.select_related("current_config").only(
            "id", "name", "service_id", "current_config__version", "current_config__config"
        )

    def with_fleet_state(self, now: datetime | None = None) -> "CircuitQuerySet":
        """Annotate ``fleet_state``, ``instances_live`` and ``n_<state>`` counts, in SQL.

        A circuit's fleet state is its override if one is in force, else the worst state
        among its live instances, else "unknown". Also prefetches the override in force
        as ``active_override_list`` (0 or 1 item).
        """
        now = now or timezone.now()
        overrides: Any = cast(Any, self.model._meta.get_field("overrides").related_model).objects
        live = live_snapshots(now)
        # The override in force, joined (at most one row per circuit: the open override
        # is unique per circuit) and read with one aggregate. A correlated subquery here
        # was evaluated again for every reference to fleet_state (the overview's sort
        # repeats it), 60,000 index scans for 10,000 circuits.
        in_force = FilteredRelation(
            "overrides",
            condition=Q(overrides__ended_at__isnull=True)
            & (Q(overrides__expires_at__isnull=True) | Q(overrides__expires_at__gt=now)),
        )
        counts = {
            field: Count("snapshots", filter=live & Q(snapshots__state=state))
            for state, field in STATE_COUNT_FIELDS.items()
        }
        worst = [
            When(**{f"{field}__gt": 0}, then=Value(state))
            for state, field in STATE_COUNT_FIELDS.items()
        ]
        return (
            self.annotate(in_force_override=in_force)
            .annotate(
                override_state=Max("in_force_override__state"),
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
                    queryset=overrides.in_force(now).select_related("created_by"),
                    to_attr="active_override_list",
                )
            )
        )

    def with_rates(self, now: datetime | None = None) -> "CircuitQuerySet":
        """Annotate ``call_rate`` and ``rejected_rate``: calls (rejected calls) per second
        over the circuit's live snapshots, in SQL.

        Each live row contributes its ``*_delta`` over its ``delta_seconds`` (the agent's
        clock between the two syncs the counters were read in); a row whose
        ``delta_seconds`` is unknown or 0 contributes nothing, and a circuit none of whose
        live rows has a rate has none (NULL).
        """
        live = live_snapshots(now)
        return self.annotate(
            call_rate=Sum(per_second("calls_delta"), filter=live),
            rejected_rate=Sum(per_second("rejected_delta"), filter=live),
        )

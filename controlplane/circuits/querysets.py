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

STATE_COUNT_FIELDS: dict[str, str] = {state: f"n_{state}" for state in SEVERITY_ORDER}


def live_window() -> timedelta:
    """How recently an instance must have reported a circuit to count as live."""
    return timedelta(seconds=settings.SWITCHYARD_POLL_INTERVAL * settings.SWITCHYARD_LIVE_INTERVALS)


def live_cutoff(now: datetime | None = None) -> datetime:
    """Reports older than this are not live."""
    return (now or timezone.now()) - live_window()


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
        live = Q(snapshots__updated_at__gte=live_cutoff(now))
        override_state = overrides.in_force(now).filter(circuit=OuterRef("pk")).values("state")[:1]
        counts = {
            field: Count("snapshots", filter=live & Q(snapshots__state=state))
            for state, field in STATE_COUNT_FIELDS.items()
        }
        worst = [
            When(**{f"{field}__gt": 0}, then=Value(state))
            for state, field in STATE_COUNT_FIELDS.items()
        ]
        return (
            self.annotate(
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
                    queryset=overrides.in_force(now).select_related("created_by"),
                    to_attr="active_override_list",
                )
            )
        )

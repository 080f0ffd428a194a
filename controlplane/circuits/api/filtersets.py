"""Filters of the operator API's list endpoints."""

from django import forms
from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters

from controlplane.circuits.choices import NAME_MAX_LENGTH, CircuitState, FleetState
from controlplane.circuits.models import AuditEvent, Circuit, Instance, Service, Transition
from controlplane.circuits.querysets import InstanceQuerySet
from controlplane.core.audit import action_choices
from controlplane.core.filters import UTCIsoDateTimeFilter


class ServiceFilterSet(filters.FilterSet):
    """``q``: name contains."""

    q = filters.CharFilter(field_name="name", lookup_expr="icontains", max_length=NAME_MAX_LENGTH)

    class Meta:
        model = Service
        fields = ["name"]


class CircuitFilterSet(filters.FilterSet):
    """``service`` by name, ``state`` (fleet state), ``q``: name contains."""

    service = filters.CharFilter(field_name="service__name", max_length=NAME_MAX_LENGTH)
    state = filters.MultipleChoiceFilter(field_name="fleet_state", choices=FleetState.choices)
    q = filters.CharFilter(field_name="name", lookup_expr="icontains", max_length=NAME_MAX_LENGTH)

    class Meta:
        model = Circuit
        fields = ["service", "state", "q"]


class TransitionFilterSet(filters.FilterSet):
    """``instance`` (agent instance id), ``to`` state, ``since`` / ``until`` (ISO-8601)."""

    instance = filters.CharFilter(field_name="instance__instance_id", max_length=NAME_MAX_LENGTH)
    to = filters.ChoiceFilter(field_name="to_state", choices=CircuitState.choices)
    since = UTCIsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = UTCIsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = Transition
        fields = ["instance", "to", "since", "until"]


class IdFilter(filters.Filter):
    """An object's id: an integer from 1 to the largest bigint."""

    field_class = forms.IntegerField

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class FleetTransitionFilterSet(filters.FilterSet):
    """Every circuit's transitions: ``service`` by name, ``circuit`` by id, ``instance``
    (agent instance id), ``state`` entered (repeatable), ``since`` / ``until`` (ISO 8601)."""

    service = filters.CharFilter(field_name="circuit__service__name", max_length=NAME_MAX_LENGTH)
    circuit = IdFilter(field_name="circuit_id")
    instance = filters.CharFilter(field_name="instance__instance_id", max_length=NAME_MAX_LENGTH)
    # A column of the row itself: no duplicates to remove (DISTINCT would sort every
    # matching row before the first page or export byte).
    state = filters.MultipleChoiceFilter(
        field_name="to_state", choices=CircuitState.choices, distinct=False
    )
    since = UTCIsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = UTCIsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = Transition
        fields = ["service", "circuit", "instance", "state", "since", "until"]


class InstanceFilterSet(filters.FilterSet):
    """``service`` by name, ``live`` (seen within the live window), ``q``: id or hostname."""

    service = filters.CharFilter(field_name="service__name", max_length=NAME_MAX_LENGTH)
    live = filters.BooleanFilter(method="filter_live")
    q = filters.CharFilter(method="filter_q", max_length=NAME_MAX_LENGTH)

    class Meta:
        model = Instance
        fields = ["service", "live", "q"]

    def filter_live(
        self, queryset: InstanceQuerySet, name: str, value: bool | None
    ) -> InstanceQuerySet:
        if value is None:
            return queryset
        return queryset.live() if value else queryset.not_live()

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(instance_id__icontains=value) | Q(hostname__icontains=value))


class AuditEventFilterSet(filters.FilterSet):
    """``action``, ``actor``, ``service`` by name, ``target_type``/``target_id``, time range."""

    action = filters.MultipleChoiceFilter(choices=action_choices, distinct=False)
    actor = filters.CharFilter(field_name="actor_name", max_length=150)
    service = filters.CharFilter(field_name="service__name", max_length=NAME_MAX_LENGTH)
    since = UTCIsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = UTCIsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "service", "target_type", "target_id", "since", "until"]

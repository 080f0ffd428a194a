"""Filters of the alerts API's list endpoints."""

from django_filters import rest_framework as filters

from controlplane.alerts.choices import AlertStatus, ChannelKind, RuleKind
from controlplane.alerts.models import Alert, AlertRule, Channel, Silence
from controlplane.circuits.choices import NAME_MAX_LENGTH


class AlertFilterSet(filters.FilterSet):
    """``status`` (repeatable), ``service`` by name, ``circuit`` and ``rule`` by id,
    ``acknowledged``."""

    status = filters.MultipleChoiceFilter(choices=AlertStatus.choices)
    service = filters.CharFilter(field_name="circuit__service__name", max_length=NAME_MAX_LENGTH)
    acknowledged = filters.BooleanFilter(
        field_name="acknowledged_at", lookup_expr="isnull", exclude=True
    )

    class Meta:
        model = Alert
        fields = ["status", "service", "circuit", "rule", "acknowledged"]


class AlertRuleFilterSet(filters.FilterSet):
    """``kind``, ``enabled``, ``service`` and ``circuit`` by id."""

    kind = filters.ChoiceFilter(choices=RuleKind.choices)

    class Meta:
        model = AlertRule
        fields = ["kind", "enabled", "service", "circuit"]


class ChannelFilterSet(filters.FilterSet):
    """``kind``, ``enabled``."""

    kind = filters.ChoiceFilter(choices=ChannelKind.choices)

    class Meta:
        model = Channel
        fields = ["kind", "enabled"]


class SilenceFilterSet(filters.FilterSet):
    """``service``, ``circuit`` and ``rule`` by id."""

    class Meta:
        model = Silence
        fields = ["service", "circuit", "rule"]

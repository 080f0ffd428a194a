"""Reads of the alerts page: filtered alert rows, the firing count, active silences.

Whether an alert is silenced is the alerts API's own expression (``silenced_now``); the
writes are in views.py and go through controlplane.alerts.operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from controlplane.alerts.api.views import silenced_now
from controlplane.alerts.choices import MAX_SILENCE, OPEN_STATUSES, AlertStatus, Severity
from controlplane.alerts.models import Alert, Silence
from controlplane.circuits.access import Scope, team_q
from controlplane.core.audit import MAX_REASON_LENGTH

STATUSES = ("open", *AlertStatus.values)
YES_NO = ("yes", "no")
# The longest silence the alerts app accepts.
MAX_SILENCE_MINUTES = int(MAX_SILENCE.total_seconds()) // 60


@dataclass(frozen=True)
class AlertFilters:
    """The page's filters, read from and written back to the URL query."""

    status: str = ""
    acknowledged: str = ""
    silenced: str = ""
    service: str = ""
    severity: str = ""
    # The teams whose alerts the viewer may see (None: all); set by the view, not the URL.
    teams: Scope = None

    @classmethod
    def from_query(cls, query: QueryDict) -> AlertFilters:
        """Unknown values are ignored (an empty filter), as on the overview."""

        def pick(name: str, allowed: tuple[str, ...] | None = None) -> str:
            value = query.get(name, "").strip()
            return value if allowed is None or value in allowed else ""

        return cls(
            status=pick("status", STATUSES),
            acknowledged=pick("acknowledged", YES_NO),
            silenced=pick("silenced", YES_NO),
            service=pick("service")[:200],
            severity=pick("severity", tuple(Severity.values)),
        )


def alerts_queryset() -> QuerySet[Alert]:
    """Every alert with what a row shows, newest first."""
    return (
        Alert.objects.select_related("rule", "circuit__service", "acknowledged_by")
        .annotate(silenced=silenced_now())
        .order_by("-started_at", "-id")
    )


def filtered_alerts(f: AlertFilters) -> QuerySet[Alert]:
    """The alerts the filters select."""
    qs = alerts_queryset().filter(team_q(f.teams, "circuit__service__team"))
    if f.status == "open":
        qs = qs.filter(status__in=OPEN_STATUSES)
    elif f.status:
        qs = qs.filter(status=f.status)
    if f.acknowledged:
        qs = qs.filter(acknowledged_at__isnull=f.acknowledged == "no")
    if f.silenced:
        # ``silenced`` is the annotation of alerts_queryset (the stubs do not see it).
        qs = qs.filter(**{"silenced": f.silenced == "yes"})
    if f.service:
        qs = qs.filter(circuit__service__name=f.service)
    if f.severity:
        qs = qs.filter(rule__severity=f.severity)
    return qs


def firing_count(teams: Scope = None) -> int:
    """Alerts of ``teams`` firing now (the navigation badge)."""
    qs = Alert.objects.filter(status=AlertStatus.FIRING)
    return qs.filter(team_q(teams, "circuit__service__team")).count()


def silence_q(teams: Scope) -> Q:
    """Silences of ``teams``: of their circuits, or of their services (None: all)."""
    if teams is None:
        return Q()
    return Q(circuit__service__team__in=teams) | Q(circuit__isnull=True, service__team__in=teams)


def active_silences(teams: Scope = None) -> QuerySet[Silence]:
    """Silences of ``teams`` in force or scheduled, soonest to expire first."""
    return (
        Silence.objects.filter(expires_at__gt=timezone.now())
        .filter(silence_q(teams))
        .select_related("service", "circuit__service", "rule", "created_by")
        .order_by("expires_at", "id")
    )


class SilenceForm(forms.Form):
    """Silence what an alert matches: its circuit, its service or its rule."""

    MATCHES = {"circuit": "this circuit", "service": "this service", "rule": "this rule"}

    alert = forms.IntegerField(widget=forms.HiddenInput)
    match = forms.ChoiceField(choices=list(MATCHES.items()), initial="circuit")
    reason = forms.CharField(required=False, max_length=MAX_REASON_LENGTH)
    expires_in_minutes = forms.IntegerField(min_value=1, max_value=MAX_SILENCE_MINUTES, initial=60)
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data.get("reason", "")).strip()
        if not reason:
            raise forms.ValidationError("A reason is required to silence alerts.")
        return reason


def silence_matcher(alert: Alert, match: str) -> dict[str, Any]:
    """The silence's matcher (API field -> id) for ``match`` on ``alert``."""
    if match == "service":
        return {"service": alert.circuit.service_id}
    if match == "rule":
        return {"rule": alert.rule_id}
    return {"circuit": alert.circuit_id}


def target_label(alert: Alert, match: str) -> str:
    """What a silence on ``match`` mutes, in words."""
    if match == "service":
        return f"service {alert.circuit.service.name}"
    if match == "rule":
        return f"rule {alert.rule.name}"
    return f"circuit {alert.circuit.service.name}/{alert.circuit.name}"


def alert_rows_by_id(ids: list[int], teams: Scope = None) -> dict[str, Any]:
    """The live message body: these alerts of ``teams`` as rows, and their firing count
    (two queries)."""
    rows = [
        {
            "id": a.pk,
            "rule": a.rule.name,
            "kind": a.rule.kind,
            "severity": a.rule.severity,
            "service": a.circuit.service.name,
            "circuit_id": a.circuit_id,
            "circuit": a.circuit.name,
            "status": a.status,
            "labels": a.labels,
            "silenced": bool(getattr(a, "silenced", False)),
            "acknowledged_by": (
                a.acknowledged_by.get_username()
                if a.acknowledged_by
                else ("system" if a.acknowledged_at else None)
            ),
        }
        for a in alerts_queryset()
        .filter(pk__in=ids)
        .filter(team_q(teams, "circuit__service__team"))
    ]
    return {"alerts": rows, "firing": firing_count(teams)}

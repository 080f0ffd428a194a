"""Alerts API ViewSets: declarations; writes audited through one mixin."""

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.alerts.api import filtersets
from controlplane.alerts.api import serializers as s
from controlplane.alerts.choices import AlertAuditAction
from controlplane.alerts.models import Alert, AlertRule, Channel, Silence
from controlplane.alerts.operations import (
    NotOpenError,
    acknowledge,
    delete_audited,
    end_silence,
    save_audited,
    send_test_notification,
)
from controlplane.circuits import access
from controlplane.circuits.api.permissions import GlobalPerms, TeamScopedMixin
from controlplane.core import schema as core_schema
from controlplane.core.permissions import acting_user
from controlplane.core.viewsets import ReadOnlyViewSet, ReadWriteViewSet


def crud(model: str, *, add: str | None = None) -> dict[str, tuple[str | None, str | None]]:
    """Action permissions: view to read, add/change/delete to write."""
    view = f"alerts.view_{model}"
    return {
        "list": (view, None),
        "retrieve": (view, None),
        "create": (None, add or f"alerts.add_{model}"),
        "update": (None, f"alerts.change_{model}"),
        "partial_update": (None, f"alerts.change_{model}"),
        "destroy": (None, f"alerts.delete_{model}"),
    }


class AuditedWritesMixin:
    """Creates, updates and deletes in one transaction with their audit event."""

    audit_actions: dict[str, str]
    request: Any  # the view's Request

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        user = acting_user(self.request)
        save_audited(serializer, user, self.audit_actions["create"], **self.extra_save())

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        save_audited(serializer, acting_user(self.request), self.audit_actions["update"])

    def perform_destroy(self, instance: Any) -> None:
        delete_audited(instance, acting_user(self.request), self.audit_actions["delete"])

    def extra_save(self) -> dict[str, Any]:
        return {}


class ChannelViewSet(AuditedWritesMixin, ReadWriteViewSet):
    """Notification channels (admins write; secrets are never returned in full)."""

    serializer_class = s.ChannelSerializer
    filterset_class = filtersets.ChannelFilterSet
    queryset = Channel.objects.order_by("name")
    action_permissions = {**crud("channel"), "test": (None, "alerts.change_channel")}
    perms_class = GlobalPerms
    audit_actions = {
        "create": AlertAuditAction.CHANNEL_CREATE,
        "update": AlertAuditAction.CHANNEL_UPDATE,
        "delete": AlertAuditAction.CHANNEL_DELETE,
    }

    @extend_schema(request=None, responses={200: s.ChannelTestSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def test(self, request: Request, pk: str | None = None) -> Response:
        """Send a test notification through the channel's transport now (audited as
        `channel.test`); 200 with the outcome, whether it was delivered or not."""
        result = send_test_notification(self.get_object(), user=acting_user(request))
        return Response(s.ChannelTestSerializer(result).data)


class AlertRuleViewSet(AuditedWritesMixin, ReadWriteViewSet):
    """Alert rules (admins write)."""

    serializer_class = s.AlertRuleSerializer
    filterset_class = filtersets.AlertRuleFilterSet
    queryset = AlertRule.objects.prefetch_related("channels").order_by("name")
    action_permissions = crud("alertrule")
    perms_class = GlobalPerms
    audit_actions = {
        "create": AlertAuditAction.RULE_CREATE,
        "update": AlertAuditAction.RULE_UPDATE,
        "delete": AlertAuditAction.RULE_DELETE,
    }


class SilenceViewSet(AuditedWritesMixin, TeamScopedMixin, ReadWriteViewSet):
    """Silences (operators write); DELETE ends one now and keeps it in the history.

    A silence of a service or circuit belongs to that service's team; one of a rule
    alone (or of services of two teams) belongs to none: global roles only."""

    serializer_class = s.SilenceSerializer
    filterset_class = filtersets.SilenceFilterSet
    queryset = Silence.objects.select_related("created_by", "service", "circuit__service").order_by(
        "-expires_at", "-id"
    )
    action_permissions = crud("silence")
    view_perm = "alerts.view_silence"
    team_path = "service__team"
    audit_actions = {
        "create": AlertAuditAction.SILENCE_CREATE,
        "update": AlertAuditAction.SILENCE_UPDATE,
    }

    def scoped(self, qs: QuerySet[Any], path: str | None = None) -> QuerySet[Any]:
        teams = access.scope(self.request.user, self.view_perm)
        if teams is None:
            return qs
        return qs.filter(
            Q(circuit__service__team__in=teams) | Q(circuit__isnull=True, service__team__in=teams)
        )

    def team_of(self, obj: Any) -> int | None:
        return silence_team(obj.service, obj.circuit)

    def extra_save(self) -> dict[str, Any]:
        return {"created_by": acting_user(self.request)}

    def _check_team(self, perm: str, data: dict[str, Any], current: Any = None) -> None:
        """403 unless the user has ``perm`` on the team the silence would belong to."""
        service = data.get("service", getattr(current, "service", None))
        circuit = data.get("circuit", getattr(current, "circuit", None))
        if not access.may(self.request.user, perm, silence_team(service, circuit)):
            raise PermissionDenied("you may not silence alerts of this service or rule")

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        self._check_team("alerts.add_silence", serializer.validated_data)
        super().perform_create(serializer)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        self._check_team("alerts.change_silence", serializer.validated_data, serializer.instance)
        super().perform_update(serializer)

    def perform_destroy(self, instance: Silence) -> None:
        end_silence(instance, user=acting_user(self.request))


def silenced_now() -> Exists:
    """Whether an active silence matches the alert (rule, circuit and its service)."""
    now = timezone.now()
    return Exists(
        Silence.objects.filter(starts_at__lte=now, expires_at__gt=now)
        .filter(Q(rule__isnull=True) | Q(rule=OuterRef("rule_id")))
        .filter(Q(circuit__isnull=True) | Q(circuit=OuterRef("circuit_id")))
        .filter(Q(service__isnull=True) | Q(service=OuterRef("circuit__service_id")))
    )


def silence_team(service: Any, circuit: Any) -> int | None:
    """The team a silence of ``service`` and/or ``circuit`` belongs to (None: a rule's
    alone, or matchers of services without one team)."""
    teams = {x.team_id for x in (service, circuit.service if circuit else None) if x is not None}
    return teams.pop() if len(teams) == 1 else None


class AlertViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """Alerts, newest first; operators acknowledge them."""

    serializer_class = s.AlertSerializer
    filterset_class = filtersets.AlertFilterSet
    team_path = "circuit__service__team"
    view_perm = "alerts.view_alert"
    action_permissions = {
        "list": ("alerts.view_alert", None),
        "retrieve": ("alerts.view_alert", None),
        "ack": (None, "alerts.acknowledge_alert"),
    }

    def get_queryset(self) -> QuerySet[Alert]:
        return (
            Alert.objects.select_related("rule", "circuit__service", "acknowledged_by")
            .annotate(silenced=silenced_now())
            .order_by("-started_at", "-id")
        )

    @extend_schema(
        request=None,
        responses={200: s.AlertSerializer, 400: core_schema.error("the alert is resolved")},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def ack(self, request: Request, pk: str | None = None) -> Response:
        """Acknowledge an open alert: no reminders until it resolves."""
        alert = self.get_object()
        try:
            acknowledge(alert, user=acting_user(request))
        except NotOpenError as exc:
            raise ValidationError({"status": str(exc).split(": ", 1)[1]}) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=alert.pk)).data)

"""Data model of alerting: rules, alerts (one open per rule x circuit), silences,
channels, notifications and every delivery attempt."""

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse

from controlplane.alerts.choices import (
    OPEN_STATUSES,
    AlertStatus,
    AttemptStatus,
    ChannelKind,
    NotificationEvent,
    NotificationStatus,
    RuleKind,
    Severity,
)
from controlplane.circuits.models import Circuit, Service

#: An alert's window starts this long before the alert and ends this long after it.
WINDOW_MARGIN = timedelta(minutes=15)


def _second(moment: datetime) -> str:
    """A whole-second UTC time as a URL carries it: 2026-11-27T11:45:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Channel(models.Model):
    """Where notifications go: a webhook, email addresses or Apprise URLs.

    ``config`` holds the kind's settings, secrets included; the API never returns
    those in full and nothing logs them.
    """

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    config = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    # Set when a delivery failed permanently (a 4xx, a bad address); cleared by an edit.
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        from controlplane.alerts.transports import config_errors

        errors = config_errors(self.kind, self.config)
        if errors:
            raise ValidationError({"config": [f"{k}: {v}" for k, v in errors.items()]})


class AlertRule(models.Model):
    """A condition over circuits, scoped to all circuits, one service or one circuit."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, choices=RuleKind.choices)
    params = models.JSONField(default=dict, blank=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules"
    )
    circuit = models.ForeignKey(
        Circuit, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules"
    )
    channels = models.ManyToManyField(Channel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    # Seconds between reminders while an alert fires unacknowledged; 0 = never repeat.
    repeat_interval = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(service__isnull=True) | Q(circuit__isnull=True),
                name="alertrule_one_scope",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=RuleKind.values), name="alertrule_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> str:
        """ "global", "service" or "circuit"."""
        if self.circuit_id:
            return "circuit"
        return "service" if self.service_id else "global"

    def clean(self) -> None:
        from controlplane.alerts.rules import params_errors

        if self.service_id and self.circuit_id:
            raise ValidationError({"circuit": "give a service or a circuit, not both"})
        errors = params_errors(self.kind, self.params)
        if errors:
            raise ValidationError({"params": [f"{k}: {v}" for k, v in errors.items()]})

    def full_params(self) -> dict[str, Any]:
        """The params with the kind's defaults filled in."""
        from controlplane.alerts.rules import get_rule_kind

        return get_rule_kind(self.kind).with_defaults(self.params)


class Alert(models.Model):
    """One episode of a rule matching a circuit: pending, then firing, then resolved."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="alerts")
    status = models.CharField(max_length=16, choices=AlertStatus.choices)
    # When the condition began (for open_too_long: the start of the open episode).
    started_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    # Firing notification rounds so far (1 = the first, then one per repeat).
    notify_round = models.PositiveIntegerField(default=0)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    value = models.FloatField(null=True, blank=True)
    # Forced open by an operator (open_too_long): labelled, and paging only if the rule says so.
    forced = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # The dedup guarantee: two evaluations racing insert one open alert.
            models.UniqueConstraint(
                fields=["rule", "circuit"],
                condition=Q(status__in=OPEN_STATUSES),
                name="alert_one_open_per_rule_circuit",
            ),
            models.CheckConstraint(
                condition=Q(status__in=AlertStatus.values), name="alert_status_valid"
            ),
        ]
        indexes = [
            # Evaluation's "open alerts", and the API's firing list.
            models.Index(
                fields=["status", "rule"],
                name="alert_open_idx",
                condition=Q(status__in=OPEN_STATUSES),
            ),
            models.Index(fields=["circuit", "-started_at"], name="alert_circuit_idx"),
        ]
        permissions = [("acknowledge_alert", "Can acknowledge an alert")]

    def __str__(self) -> str:
        return f"{self.rule} on {self.circuit}: {self.status}"

    @property
    def labels(self) -> dict[str, Any]:
        """Labels shown with the alert and sent in notifications."""
        return {"forced": True} if self.forced else {}

    @property
    def window(self) -> tuple[datetime, datetime | None]:
        """The time to look at for this alert: from WINDOW_MARGIN before it started to
        WINDOW_MARGIN after it resolved (None while it is open: up to now), whole seconds."""
        start = (self.started_at - WINDOW_MARGIN).replace(microsecond=0)
        if self.resolved_at is None:
            return start, None
        end = self.resolved_at + WINDOW_MARGIN
        return start, end.replace(microsecond=0) + timedelta(seconds=bool(end.microsecond))

    @property
    def window_query(self) -> str:
        """``from=...&to=...`` of :attr:`window`, as the circuit page reads them."""
        start, end = self.window
        params = {"from": _second(start)}
        if end is not None:
            params["to"] = _second(end)
        return urlencode(params, safe=":")

    def window_url(self) -> str:
        """The circuit page at this alert's window, absolute when
        SWITCHYARD_PUBLIC_URL is set (what notifications link to)."""
        path = reverse("dashboard:circuit", args=[self.circuit_id])
        return f"{settings.SWITCHYARD_PUBLIC_URL}{path}?{self.window_query}#traffic"


class Silence(models.Model):
    """Mutes notifications of alerts matching every given matcher until ``expires_at``."""

    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.CASCADE, related_name="silences"
    )
    circuit = models.ForeignKey(
        Circuit, null=True, blank=True, on_delete=models.CASCADE, related_name="silences"
    )
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="silences"
    )
    starts_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-expires_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("starts_at")),
                name="silence_expires_after_start",
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="silence_expiry_idx")]

    def __str__(self) -> str:
        parts = [
            f"{label}={value}"
            for label, value in (
                ("service", self.service),
                ("circuit", self.circuit),
                ("rule", self.rule),
            )
            if value is not None
        ]
        return (
            f"silence {' '.join(parts) or 'everything'} until {self.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        )


class Notification(models.Model):
    """One message about one alert to one channel; delivered once, claimed by an UPDATE."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    # The alert's notify_round for firing notifications (repeats), 0 for resolved.
    round = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "channel", "event", "round"], name="notification_once"
            ),
        ]
        indexes = [
            # The sweeper's "pending deliveries".
            models.Index(
                fields=["next_attempt_at"],
                name="notification_pending_idx",
                condition=Q(status=NotificationStatus.PENDING),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} to {self.channel_id}: {self.status}"


class NotificationAttempt(models.Model):
    """One try at delivering a notification, with its outcome."""

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="attempt_rows"
    )
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=AttemptStatus.choices)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField()

    class Meta:
        ordering = ["notification", "number", "id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.notification_id}: {self.status}"

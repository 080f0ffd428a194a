"""Named choices of the alerts app."""

from datetime import timedelta

from django.db import models

# The longest a silence may reach ahead of now.
MAX_SILENCE = timedelta(days=90)


class RuleKind(models.TextChoices):
    """Kinds of alert rule; each has a module in controlplane.alerts.rules."""

    OPEN_TOO_LONG = "open_too_long", "circuit open too long"
    FAILURE_RATE = "failure_rate", "failure rate above a threshold"
    TRIP_RISE = "trip_rise", "unusual rise in trips"
    AGENT_SILENT = "agent_silent", "agent silent"


class Severity(models.TextChoices):
    """How urgent an alert of a rule is."""

    INFO = "info", "info"
    WARNING = "warning", "warning"
    CRITICAL = "critical", "critical"


class AlertStatus(models.TextChoices):
    """Lifecycle of an alert: pending -> firing -> resolved (pending may resolve directly)."""

    PENDING = "pending", "pending"
    FIRING = "firing", "firing"
    RESOLVED = "resolved", "resolved"


OPEN_STATUSES: tuple[str, ...] = (AlertStatus.PENDING, AlertStatus.FIRING)


class ChannelKind(models.TextChoices):
    """Kinds of notification channel; each has a module in controlplane.alerts.transports."""

    WEBHOOK = "webhook", "webhook"
    EMAIL = "email", "email"
    APPRISE = "apprise", "Apprise URLs"


class NotificationEvent(models.TextChoices):
    """What a notification announces."""

    FIRING = "firing", "firing"
    RESOLVED = "resolved", "resolved"


class NotificationStatus(models.TextChoices):
    """Delivery state of one notification."""

    PENDING = "pending", "pending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"


class AttemptStatus(models.TextChoices):
    """Outcome of one delivery attempt."""

    OK = "ok", "delivered"
    RETRY = "retry", "failed, will retry"
    FAILED = "failed", "failed permanently"


class AlertAuditAction(models.TextChoices):
    """Audit actions of the alerts app (AuditEvent.action is free text of 32 chars)."""

    RULE_CREATE = "alert_rule.create", "alert rule created"
    RULE_UPDATE = "alert_rule.update", "alert rule updated"
    RULE_DELETE = "alert_rule.delete", "alert rule deleted"
    CHANNEL_CREATE = "channel.create", "channel created"
    CHANNEL_UPDATE = "channel.update", "channel updated"
    CHANNEL_DELETE = "channel.delete", "channel deleted"
    CHANNEL_TEST = "channel.test", "test notification sent"
    SILENCE_CREATE = "silence.create", "silence created"
    SILENCE_UPDATE = "silence.update", "silence updated"
    SILENCE_EXPIRE = "silence.expire", "silence ended"
    ALERT_ACK = "alert.acknowledge", "alert acknowledged"

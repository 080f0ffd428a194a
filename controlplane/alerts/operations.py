"""Operator and admin actions on alerts, each audited in its own transaction:
acknowledge an alert, end a silence, save or delete a rule, channel or silence (the
API's writes and the dashboard's), send a test notification through a channel."""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from breakers.wire import format_timestamp
from controlplane.alerts import events
from controlplane.alerts.choices import OPEN_STATUSES, AlertAuditAction
from controlplane.alerts.models import Alert, AlertRule, Channel, Silence
from controlplane.alerts.transports import TransportError, get_transport
from controlplane.core.audit import record_audit

logger = logging.getLogger(__name__)


class NotOpenError(ValueError):
    """Acknowledging an alert that is already resolved."""


def rule_wire(rule: AlertRule) -> dict[str, Any]:
    """An alert rule as recorded in audit events."""
    return {
        "name": rule.name,
        "kind": rule.kind,
        "params": rule.params,
        "severity": rule.severity,
        "service": rule.service_id,
        "circuit": rule.circuit_id,
        "channels": sorted(rule.channels.values_list("pk", flat=True)) if rule.pk else [],
        "enabled": rule.enabled,
        "repeat_interval": rule.repeat_interval,
    }


def channel_wire(channel: Channel) -> dict[str, Any]:
    """A channel as recorded in audit events: secrets redacted."""
    return {
        "name": channel.name,
        "kind": channel.kind,
        "config": get_transport(channel.kind).redact(channel.config),
        "enabled": channel.enabled,
    }


def silence_wire(silence: Silence) -> dict[str, Any]:
    """A silence as recorded in audit events."""
    return {
        "service": silence.service_id,
        "circuit": silence.circuit_id,
        "rule": silence.rule_id,
        "starts_at": format_timestamp(silence.starts_at),
        "expires_at": format_timestamp(silence.expires_at),
        "reason": silence.reason,
    }


def wire_of(obj: AlertRule | Channel | Silence) -> dict[str, Any]:
    """The audit form of a rule, channel or silence."""
    if isinstance(obj, AlertRule):
        return rule_wire(obj)
    if isinstance(obj, Channel):
        return channel_wire(obj)
    return silence_wire(obj)


def audit_write(
    user: User | None,
    action: str,
    obj: AlertRule | Channel | Silence,
    *,
    before: dict[str, Any] | None,
    reason: str = "",
    deleted: bool = False,
) -> None:
    """Record the audit event of a create, update or delete of ``obj`` (in the caller's
    transaction)."""
    after = None if deleted else wire_of(obj)
    service_id = getattr(obj, "service_id", None)
    record_audit(
        actor=user, action=action, target=obj, reason=reason, before=before, after=after,
        service_id=service_id,
    )  # fmt: skip


class SavingSerializer(Protocol):
    """What ``save_audited`` needs of a validated DRF ModelSerializer."""

    instance: Any

    def save(self, **kwargs: Any) -> Any: ...


def save_audited(
    serializer: SavingSerializer, user: User | None, action: str, **extra: Any
) -> AlertRule | Channel | Silence:
    """Save a validated serializer's create or update with its audit event (before and
    after, secrets redacted), in one transaction."""
    with transaction.atomic():
        before = wire_of(serializer.instance) if serializer.instance is not None else None
        obj: AlertRule | Channel | Silence = serializer.save(**extra)
        audit_write(user, action, obj, before=before)
    return obj


def delete_audited(obj: AlertRule | Channel, user: User | None, action: str) -> None:
    """Delete a rule or channel with its audit event (what it was), in one transaction."""
    with transaction.atomic():
        audit_write(user, action, obj, before=wire_of(obj), deleted=True)
        obj.delete()


@dataclass(frozen=True)
class ChannelTestResult:
    """What a test notification did: ``ok``, and the far side's answer or the error."""

    ok: bool
    detail: str
    duration_ms: int


def sample_notification(channel: Channel, now: datetime) -> dict[str, Any]:
    """A test notification shaped like a real one: ``event`` "test", no ``delivery_id``."""
    moment = format_timestamp(now)
    return {
        "event": "test",
        "alert": {
            "id": None,
            "rule": f"test of channel {channel.name}",
            "kind": "test",
            "severity": "info",
            "service": "switchyard",
            "circuit": "test",
            "circuit_id": None,
            "state": "test",
            "started_at": moment,
            "fired_at": moment,
            "resolved_at": None,
            "value": None,
            "labels": {"test": True},
            "acknowledged": False,
            "url": f"{settings.SWITCHYARD_PUBLIC_URL}/alerts/",
        },
    }


def send_test_notification(
    channel: Channel, *, user: User | None, now: datetime | None = None
) -> ChannelTestResult:
    """Send a test notification through the channel's own transport, now, in this
    process (a disabled channel too: a test is how to know it works), and audit it with
    its outcome. The channel's delivery state (``failed_at``) is left as it is."""
    now = now or timezone.now()
    started = time.monotonic()
    try:
        transport = get_transport(channel.kind)(channel.config)
        ok, detail = True, transport.notify(sample_notification(channel, now))
    except TransportError as exc:
        ok, detail = False, str(exc)
    except Exception as exc:  # a transport bug: say so without its details (secrets)
        logger.exception("transport %s failed a test of channel %s", channel.kind, channel.pk)
        ok, detail = False, f"{type(exc).__name__} in transport"
    result = ChannelTestResult(ok, detail, int((time.monotonic() - started) * 1000))
    record_audit(
        actor=user,
        action=AlertAuditAction.CHANNEL_TEST,
        target=channel,
        after={"ok": result.ok, "detail": result.detail, "duration_ms": result.duration_ms},
        now=now,
    )
    return result


def acknowledge(alert: Alert, *, user: User, now: datetime | None = None) -> Alert:
    """Acknowledge an open alert: no reminders until it resolves. Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update()
            .select_related("rule", "circuit__service")
            .get(pk=alert.pk)
        )
        if alert.status not in OPEN_STATUSES:
            raise NotOpenError("status: a resolved alert cannot be acknowledged")
        if alert.acknowledged_at is None:
            alert.acknowledged_at = now
            alert.acknowledged_by = user
            alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
            record_audit(
                actor=user,
                action=AlertAuditAction.ALERT_ACK,
                target=alert,
                before={"acknowledged": False},
                after={"acknowledged": True},
                service_id=alert.circuit.service_id,
                now=now,
            )
            events.publish_alerts([alert])
    return alert


def end_silence(silence: Silence, *, user: User | None, now: datetime | None = None) -> Silence:
    """End a silence now (it stays in the history)."""
    now = now or timezone.now()
    with transaction.atomic():
        silence = Silence.objects.select_for_update().get(pk=silence.pk)
        if silence.expires_at > now:
            before = silence_wire(silence)
            silence.expires_at = now
            if silence.starts_at >= now:  # never started: keep expires_at after starts_at
                silence.starts_at = now - timedelta(microseconds=1)
            silence.save(update_fields=["starts_at", "expires_at"])
            audit_write(user, AlertAuditAction.SILENCE_EXPIRE, silence, before=before)
    return silence

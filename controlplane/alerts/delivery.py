"""Delivery of one notification: claim it, send it through its channel's transport,
record the attempt.

A notification is claimed by a conditional UPDATE (pending, and unclaimed or its
claim expired), so with several workers, or a redelivered task, exactly one sends
it. A worker killed mid-delivery leaves a claim that expires after
SWITCHYARD_ALERT_CLAIM_TTL seconds; the periodic sweep then hands it out again.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from breakers.wire import format_timestamp
from controlplane.alerts.choices import AttemptStatus, NotificationStatus
from controlplane.alerts.models import Alert, Channel, Notification, NotificationAttempt
from controlplane.alerts.transports import TransportError, get_transport

logger = logging.getLogger(__name__)

Outcome = Literal["sent", "retry", "failed", "skipped"]


@dataclass(frozen=True)
class DeliveryResult:
    """What one call of ``deliver`` did; ``retry_in`` is set with outcome "retry"."""

    outcome: Outcome
    retry_in: float | None = None
    error: str = ""


def payload(notification: Notification) -> dict[str, Any]:
    """The body every transport sends: {"delivery_id": ..., "event": ..., "alert": {...}}.

    ``delivery_id`` is the notification's: the same on every attempt to deliver it (a
    retry, or a redelivery after a worker died mid-send), so a receiver can drop what
    it already has."""
    alert: Alert = notification.alert
    rule = alert.rule
    return {
        "delivery_id": notification.pk,
        "event": notification.event,
        "alert": {
            "id": alert.pk,
            "rule": rule.name,
            "kind": rule.kind,
            "severity": rule.severity,
            "service": alert.circuit.service.name,
            "circuit": alert.circuit.name,
            "circuit_id": alert.circuit_id,
            "state": alert.status,
            "started_at": format_timestamp(alert.started_at),
            "fired_at": format_timestamp(alert.fired_at),
            "resolved_at": format_timestamp(alert.resolved_at),
            "value": alert.value,
            "labels": alert.labels,
            "acknowledged": alert.acknowledged_at is not None,
            "url": alert.window_url(),
        },
    }


def backoff(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1-based): doubling, capped."""
    base = settings.SWITCHYARD_ALERT_RETRY_BACKOFF
    return float(min(base * 2 ** (attempt - 1), 3600))


def claim(notification_id: int, now: datetime) -> str | None:
    """Claim a pending notification for this worker; its claim token, or None if taken."""
    token = uuid.uuid4().hex
    expired = now - timedelta(seconds=settings.SWITCHYARD_ALERT_CLAIM_TTL)
    claimed = (
        Notification.objects.filter(pk=notification_id, status=NotificationStatus.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=expired))
        .update(claimed_at=now, claim_token=token)
    )
    return token if claimed else None


def deliver(notification_id: int, now: datetime | None = None) -> DeliveryResult:
    """Deliver one notification if it is still pending and nobody else holds it."""
    now = now or timezone.now()
    token = claim(notification_id, now)
    if token is None:
        return DeliveryResult("skipped")
    notification = Notification.objects.select_related(
        "alert__rule", "alert__circuit__service", "channel"
    ).get(pk=notification_id)
    channel: Channel = notification.channel
    number = notification.attempts + 1
    started = time.monotonic()
    error = ""
    permanent = False
    try:
        if not channel.enabled:
            raise TransportError("channel disabled", permanent=True)  # not the channel's fault
        get_transport(channel.kind)(channel.config).notify(payload(notification))
    except TransportError as exc:
        error, permanent = str(exc), exc.permanent
    except Exception as exc:  # a transport bug: retry, and keep the worker alive
        logger.exception("transport %s failed on notification %s", channel.kind, notification_id)
        error = f"{type(exc).__name__} in transport"
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return _record(notification, token, number, error, permanent, elapsed_ms)


def _record(
    notification: Notification,
    token: str,
    number: int,
    error: str,
    permanent: bool,
    elapsed_ms: int,
) -> DeliveryResult:
    now = timezone.now()
    mine = Notification.objects.filter(pk=notification.pk, claim_token=token)
    if not error:
        status, outcome, retry_in = AttemptStatus.OK, "sent", None
        mine.update(status=NotificationStatus.SENT, sent_at=now, attempts=number, last_error="")
    elif permanent or number >= settings.SWITCHYARD_ALERT_MAX_ATTEMPTS:
        status, outcome, retry_in = AttemptStatus.FAILED, "failed", None
        mine.update(status=NotificationStatus.FAILED, attempts=number, last_error=error)
        if permanent and notification.channel.enabled:
            Channel.objects.filter(pk=notification.channel_id).update(
                failed_at=now, last_error=error
            )
    else:
        status, outcome, retry_in = AttemptStatus.RETRY, "retry", backoff(number)
        # Release the claim; the retry (or the sweep) claims it again when due.
        mine.update(
            attempts=number,
            last_error=error,
            claimed_at=None,
            claim_token="",
            next_attempt_at=now + timedelta(seconds=retry_in),
        )
    NotificationAttempt.objects.create(
        notification=notification,
        number=number,
        status=status,
        error=error,
        duration_ms=elapsed_ms,
        at=now,
    )
    if error:
        logger.warning(
            "notification %s to channel %s attempt %s: %s",
            notification.pk,
            notification.channel_id,
            number,
            error,
        )
    return DeliveryResult(outcome, retry_in, error)  # type: ignore[arg-type]

"""Typed alert events on the channel layer group "alerts", sent after the commit.

A live page subscribes to the group; Channels routes ``type`` "alerts.changed" to a
handler ``alerts_changed``. Like the fleet events, publishing never fails nor holds the
caller.
"""

import logging
from datetime import datetime
from typing import Literal, TypedDict

from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Q

from breakers.wire import format_timestamp
from controlplane.alerts.models import Alert
from controlplane.core import live

logger = logging.getLogger(__name__)

ALERTS_GROUP = "alerts"
# One event carries at most this many alerts (a first cycle over a big fleet may
# change thousands at once; a page reloads on ``truncated``).
MAX_ITEMS = 500


class AlertItem(TypedDict):
    """One alert as carried by an "alerts.changed" event."""

    id: int
    rule_id: int
    rule: str
    kind: str
    severity: str
    service: str
    circuit_id: int
    circuit: str
    status: str
    forced: bool
    acknowledged: bool
    started_at: str | None
    fired_at: str | None
    resolved_at: str | None


class AlertsChangedEvent(TypedDict):
    """Alerts created, fired, resolved or acknowledged."""

    type: Literal["alerts.changed"]
    alerts: list[AlertItem]
    truncated: int


def alert_item(a: Alert) -> AlertItem:
    """The event form of an alert (with rule and circuit.service loaded)."""
    return {
        "id": a.pk,
        "rule_id": a.rule_id,
        "rule": a.rule.name,
        "kind": a.rule.kind,
        "severity": a.rule.severity,
        "service": a.circuit.service.name,
        "circuit_id": a.circuit_id,
        "circuit": a.circuit.name,
        "status": a.status,
        "forced": a.forced,
        "acknowledged": a.acknowledged_at is not None,
        "started_at": format_timestamp(a.started_at),
        "fired_at": format_timestamp(a.fired_at),
        "resolved_at": format_timestamp(a.resolved_at),
    }


def send_now(event: AlertsChangedEvent) -> None:
    """Send an event to the "alerts" group now (queued for the delivery thread with a
    Redis layer: a hung Redis never holds the caller, see :mod:`controlplane.core.live`)."""
    layer = get_channel_layer()
    if layer is None or not event["alerts"]:
        return
    try:
        live.send_to_group(layer, "alerts.changed", layer.group_send, ALERTS_GROUP, dict(event))
    except Exception:  # a broken layer must not break a committed write
        logger.exception("could not publish alerts.changed")


def publish_alerts(alerts: list[Alert], truncated: int = 0) -> None:
    """Publish these alerts as changed once the current transaction commits."""
    event: AlertsChangedEvent = {
        "type": "alerts.changed",
        "alerts": [alert_item(a) for a in alerts],
        "truncated": truncated,
    }
    if event["alerts"]:
        transaction.on_commit(lambda: send_now(event), robust=True)


def publish_changes(now: datetime) -> None:
    """Publish the alerts one evaluation cycle at ``now`` created, fired or resolved."""
    changed = Alert.objects.filter(Q(created_at=now) | Q(fired_at=now) | Q(resolved_at=now))
    total = changed.count()
    if not total:
        return
    rows = list(changed.select_related("rule", "circuit__service").order_by("id")[:MAX_ITEMS])
    publish_alerts(rows, truncated=max(0, total - MAX_ITEMS))

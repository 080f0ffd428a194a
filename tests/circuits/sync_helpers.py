"""The sync pipeline driven from a test, in the test's thread and transaction: parse a
body (a dict, as the agent would send it), store it, answer it."""

from typing import Any

import orjson
from django.utils import timezone

from controlplane.circuits.models import Service
from controlplane.circuits.sync import answer
from controlplane.circuits.sync.parse import parse
from controlplane.circuits.sync.store import Item, get_store
from controlplane.circuits.sync.wire import Sync


def parse_sync(payload: Any) -> Sync:
    """The parsed sync of a JSON-able body (SyncError when refused)."""
    return parse(orjson.dumps(payload))


def store_sync(service: Service, sync: Sync) -> dict[str, Any]:
    """Store one parsed sync now and return the decoded answer (SyncError when refused)."""
    item = Item(service.pk, service.name, sync, timezone.now())
    get_store().write([item])
    if item.error is not None:
        raise item.error
    desired = answer.desired_now(service.pk)
    return dict(orjson.loads(answer.body(desired, item.acked_through, item.telemetry_through)))


def transition(tid: int, breaker: str = "db", **fields: Any) -> dict[str, Any]:
    """A transition of a sync body: ``breaker`` tripped (closed -> open) as ``tid``."""
    return {
        "id": tid,
        "breaker": breaker,
        "from": "closed",
        "to": "open",
        "at": "2026-11-27T10:04:00Z",
        "reason": "failure_rate",
        **fields,
    }

"""Typed events published to the channel layer group "fleet" after a commit.

Consumers (the dashboard) subscribe to the group and get one message type per event
kind; Channels routes ``type`` "fleet.transitions" to a handler ``fleet_transitions``.
Publishing never fails the caller: the data is already committed, events are a
best-effort live view of it.
"""

import logging
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

FLEET_GROUP = "fleet"


class TransitionItem(TypedDict):
    """One stored transition, as carried by a "fleet.transitions" event."""

    circuit_id: int
    circuit: str
    instance: str
    from_state: str
    to_state: str
    at: str
    reason: str


class TransitionsEvent(TypedDict):
    """New transitions stored by one sync."""

    type: Literal["fleet.transitions"]
    service_id: int
    service: str
    transitions: list[TransitionItem]


class SnapshotItem(TypedDict):
    """A breaker of one instance whose state or config version changed."""

    circuit_id: int
    circuit: str
    state: str
    previous_state: str | None
    config_version: int


class SnapshotsEvent(TypedDict):
    """Snapshot changes of one instance in one sync."""

    type: Literal["fleet.snapshots"]
    service_id: int
    service: str
    instance: str
    snapshots: list[SnapshotItem]


class OverrideEvent(TypedDict):
    """A circuit forced, released or whose override expired."""

    type: Literal["fleet.override"]
    service_id: int
    circuit_id: int
    circuit: str
    action: Literal["force", "release", "expire"]
    override: dict[str, Any] | None
    desired_version: int


class ConfigEvent(TypedDict):
    """A new config version of a circuit."""

    type: Literal["fleet.config"]
    service_id: int
    circuit_id: int
    circuit: str
    config_version: int
    desired_version: int


FleetEvent = TransitionsEvent | SnapshotsEvent | OverrideEvent | ConfigEvent


async def _send_all(layer: Any, batch: list[FleetEvent]) -> None:
    for event in batch:
        await layer.group_send(FLEET_GROUP, dict(event))


def send_now(*batch: FleetEvent) -> None:
    """Send events to the "fleet" group now (from sync code), in one hop to the loop."""
    layer = get_channel_layer()
    if layer is None or not batch:
        return
    try:
        async_to_sync(_send_all)(layer, list(batch))
    except Exception:  # a broken layer must not break a committed write
        logger.exception("could not publish %s", ", ".join(e["type"] for e in batch))


def publish(*batch: FleetEvent) -> None:
    """Send events once the current transaction commits (at once outside one)."""
    if batch:
        transaction.on_commit(lambda: send_now(*batch), robust=True)

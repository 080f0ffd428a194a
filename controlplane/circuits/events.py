"""Change events: one typed builder per kind, and one :func:`publish` for all of them.

Every change worth telling anyone about is built here and handed to :func:`publish`,
which delivers it once the transaction commits to its sinks:

* the channel layer group "fleet" (every event): what one call delivers goes as one
  message, ``{"type": "fleet.batch", "events": [...]}`` (Channels routes it to a
  handler ``fleet_batch``), each event typed by its kind ("fleet.transitions",
  "fleet.snapshots", "fleet.override", "fleet.config", "fleet.drill", "fleet.shadow"):
  a write of 500 syncs is one message to Redis, not one per instance whose breakers
  changed;
* the watch hub's change feed (:func:`controlplane.circuits.watchhub.announce`) for the
  events that move a service's desired version (override, config, drill, shadow), which wakes the
  agents' long polls in every web process.

Publishing never fails nor delays the caller: the data is already committed, events
are a live view of it (agents still sync periodically, dashboards reload from the API).
What goes to Redis is delivered by this process's delivery thread
(:mod:`controlplane.core.live`), with bounded timeouts, a bounded queue and a pause
while Redis fails; a hung Redis drops events, it never holds a write's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from channels.layers import get_channel_layer
from django.db import transaction

from controlplane.core import live

if TYPE_CHECKING:
    from controlplane.circuits.models import Circuit

logger = logging.getLogger(__name__)

FLEET_GROUP = "fleet"
#: The one message type of the "fleet" group: a list of typed events.
BATCH = "fleet.batch"


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


class DrillEvent(TypedDict):
    """A drill of a circuit started, ended early or ran to its end
    (controlplane/circuits/drills.py)."""

    type: Literal["fleet.drill"]
    service_id: int
    circuit_id: int
    circuit: str
    action: Literal["start", "end", "complete"]
    drill: dict[str, Any]
    desired_version: int


class ShadowEvent(TypedDict):
    """A shadow evaluation of a circuit started or stopped."""

    type: Literal["fleet.shadow"]
    service_id: int
    circuit_id: int
    circuit: str
    action: Literal["start", "stop"]
    evaluation: int
    desired_version: int


class TrafficEvent(TypedDict):
    """Traffic rows of these circuits grew (docs/traffic.md): their series have new
    points."""

    type: Literal["fleet.traffic"]
    circuits: list[int]


FleetEvent = (
    TransitionsEvent
    | SnapshotsEvent
    | OverrideEvent
    | ConfigEvent
    | DrillEvent
    | ShadowEvent
    | TrafficEvent
)
# The kinds that move a desired version.
DesiredStateEvent = OverrideEvent | ConfigEvent | DrillEvent | ShadowEvent
DESIRED_KINDS = frozenset({"fleet.override", "fleet.config", "fleet.drill", "fleet.shadow"})


# -- builders ----------------------------------------------------------------------------


def transition_item(
    *,
    circuit_id: int,
    circuit: str,
    instance: str,
    from_state: str,
    to_state: str,
    at: str,
    reason: str,
) -> TransitionItem:
    """One stored transition of a "fleet.transitions" event."""
    return {
        "circuit_id": circuit_id,
        "circuit": circuit,
        "instance": instance,
        "from_state": from_state,
        "to_state": to_state,
        "at": at,
        "reason": reason,
    }


def traffic_event(circuit_ids: list[int]) -> TrafficEvent:
    """The traffic of ``circuit_ids`` grew."""
    return {"type": "fleet.traffic", "circuits": circuit_ids}


def transitions_event(
    *, service_id: int, service: str, transitions: list[TransitionItem]
) -> TransitionsEvent:
    """New transitions stored by one sync of a service."""
    return {
        "type": "fleet.transitions",
        "service_id": service_id,
        "service": service,
        "transitions": transitions,
    }


def snapshots_event(
    *, service_id: int, service: str, instance: str, snapshots: list[SnapshotItem]
) -> SnapshotsEvent:
    """The breakers of one instance whose state or config version changed in a sync."""
    return {
        "type": "fleet.snapshots",
        "service_id": service_id,
        "service": service,
        "instance": instance,
        "snapshots": snapshots,
    }


def override_event(
    circuit: Circuit,
    *,
    action: Literal["force", "release", "expire"],
    override: dict[str, Any] | None,
    desired_version: int,
) -> OverrideEvent:
    """``circuit`` forced, released, or its override expired; the service's desired
    state is now ``desired_version``."""
    return {
        "type": "fleet.override",
        "service_id": circuit.service_id,
        "circuit_id": circuit.pk,
        "circuit": circuit.name,
        "action": action,
        "override": override,
        "desired_version": desired_version,
    }


def config_event(circuit: Circuit, *, config_version: int, desired_version: int) -> ConfigEvent:
    """A new config version of ``circuit``; the service's desired state is now
    ``desired_version``."""
    return {
        "type": "fleet.config",
        "service_id": circuit.service_id,
        "circuit_id": circuit.pk,
        "circuit": circuit.name,
        "config_version": config_version,
        "desired_version": desired_version,
    }


def drill_event(
    circuit: Circuit,
    *,
    action: Literal["start", "end", "complete"],
    drill: dict[str, Any],
    desired_version: int,
) -> DrillEvent:
    """A drill of ``circuit`` started, ended early or ran to its end; the service's
    desired state is now ``desired_version``."""
    return {
        "type": "fleet.drill",
        "service_id": circuit.service_id,
        "circuit_id": circuit.pk,
        "circuit": circuit.name,
        "action": action,
        "drill": drill,
        "desired_version": desired_version,
    }


def shadow_event(
    circuit: Circuit, *, action: Literal["start", "stop"], evaluation: int, desired_version: int
) -> ShadowEvent:
    """A shadow evaluation of ``circuit`` started or stopped; the service's desired state
    is now ``desired_version``."""
    return {
        "type": "fleet.shadow",
        "service_id": circuit.service_id,
        "circuit_id": circuit.pk,
        "circuit": circuit.name,
        "action": action,
        "evaluation": evaluation,
        "desired_version": desired_version,
    }


# -- publishing --------------------------------------------------------------------------


def desired_versions(batch: Iterable[FleetEvent]) -> dict[int, int]:
    """Service id -> highest desired version announced by ``batch`` (empty if none)."""
    versions: dict[int, int] = {}
    for event in batch:
        if event["type"] in DESIRED_KINDS:
            service_id = event["service_id"]  # type: ignore[typeddict-item]
            version = event["desired_version"]  # type: ignore[typeddict-item]
            versions[service_id] = max(version, versions.get(service_id, 0))
    return versions


def batch_message(batch: Iterable[FleetEvent]) -> dict[str, Any]:
    """The one "fleet" group message carrying ``batch``."""
    return {"type": BATCH, "events": [dict(event) for event in batch]}


def send_to_fleet_group(*batch: FleetEvent) -> None:
    """Sink: send events to the "fleet" group (from sync code): queued for the delivery
    thread with a Redis layer, at once with the in-process one."""
    layer = get_channel_layer()
    if layer is None or not batch:
        return
    what = ", ".join(sorted({e["type"] for e in batch}))
    try:
        live.send_to_group(layer, what, layer.group_send, FLEET_GROUP, batch_message(batch))
    except Exception:  # a broken layer must not break a committed write
        logger.exception("could not publish %s", what)


def announce_to_watchers(*batch: FleetEvent) -> None:
    """Sink: wake the long polls of every service whose desired version ``batch`` moves:
    over Redis from the delivery thread, else at once to this process's hub."""
    from controlplane.circuits.watchhub import redis_url

    if not desired_versions(batch):
        return
    if redis_url():
        live.dispatcher().submit("desired state change", lambda: _announce_now(*batch))
        return
    try:
        _announce_now(*batch)
    except Exception:  # agents still sync periodically
        logger.exception("could not announce desired versions %s", desired_versions(batch))


def _announce_now(*batch: FleetEvent) -> None:
    from controlplane.circuits import watchhub

    for service_id, version in desired_versions(batch).items():
        watchhub.announce(service_id, version)


def deliver(*batch: FleetEvent) -> None:
    """Hand committed events to every sink: the watchers first (agents wait on them),
    then the "fleet" group."""
    announce_to_watchers(*batch)
    send_to_fleet_group(*batch)


def publish(*batch: FleetEvent) -> None:
    """Send events once the current transaction commits (at once outside one)."""
    if batch:
        transaction.on_commit(lambda: deliver(*batch), robust=True)

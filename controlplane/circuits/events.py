"""Change events: one typed builder per kind, and one :func:`publish` for all of them.

Every change worth telling anyone about is built here and handed to :func:`publish`,
which delivers it once the transaction commits to its sinks:

* the channel layer group "fleet" (every event): events go as one message,
  ``{"type": "fleet.batch", "events": [...]}`` (Channels routes it to a handler
  ``fleet_batch``), each event typed by its kind ("fleet.transitions",
  "fleet.snapshots", "fleet.override", "fleet.config", "fleet.drill", "fleet.shadow"):
  a write of 500 syncs is one message to Redis, not one per instance whose breakers
  changed. Over Redis a process sends at most one message every
  :data:`FLEET_INTERVAL` seconds: the first after a quiet spell leaves at once, and
  what commits while it waits goes in the next one (:class:`FleetOutbox`), so a
  writer committing hundreds of times a second costs Redis a few messages a second;
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

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from controlplane.core import live

if TYPE_CHECKING:
    from controlplane.circuits.models import Circuit

logger = logging.getLogger(__name__)

FLEET_GROUP = "fleet"
#: Seconds between two messages of one process to the "fleet" group over Redis, at
#: least (the dashboards coalesce for as long again: dashboard.consumers).
FLEET_INTERVAL = 0.1
#: Events in one such message at most; the rest go in the next one.
FLEET_MAX_EVENTS = 10_000
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
    """Sink: send events to the "fleet" group (from sync code): through
    :class:`FleetOutbox` and the delivery thread with a Redis layer, at once with the
    in-process one."""
    layer = get_channel_layer()
    if layer is None or not batch:
        return
    if not isinstance(layer, InMemoryChannelLayer):
        _outbox.add(batch)
        return
    what = ", ".join(sorted({e["type"] for e in batch}))
    try:
        live.send_to_group(layer, what, layer.group_send, FLEET_GROUP, batch_message(batch))
    except Exception:  # a broken layer must not break a committed write
        logger.exception("could not publish %s", what)


class FleetOutbox:
    """This process's events for the "fleet" group that have not left yet. Events
    after a quiet spell are handed to the delivery thread at once; while
    :data:`FLEET_INTERVAL` has not passed since the last hand-over, they wait for it and
    go together (at most :data:`FLEET_MAX_EVENTS` in one message, the rest one interval
    later). What the delivery thread drops (its queue full, Redis failing) is dropped
    as any event is: counted and logged there."""

    def __init__(self, interval: float = FLEET_INTERVAL) -> None:
        self.interval = interval
        self.messages = 0  # messages handed to the delivery thread (tests)
        self.reset()

    def reset(self) -> None:
        """Start empty (a forked child: its parent's timer and lock are not its own)."""
        self._lock = threading.Lock()
        self._events: list[FleetEvent] = []
        self._timer: threading.Timer | None = None  # the hand-over waiting its turn
        self._last = float("-inf")  # monotonic moment of the last hand-over

    def add(self, batch: Iterable[FleetEvent]) -> None:
        with self._lock:
            self._events.extend(batch)
            if self._timer is not None:
                return  # they go with the hand-over already timed
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self._start_timer(wait)
                return
        self._hand_over()

    def flush(self) -> None:
        """Hand over now what waits for its turn (a process about to exit)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            self._hand_over()

    def _start_timer(self, wait: float) -> None:
        # Called with the lock held.
        self._timer = threading.Timer(wait, self._hand_over)
        self._timer.daemon = True
        self._timer.start()

    def _hand_over(self) -> None:
        with self._lock:
            events = self._events[:FLEET_MAX_EVENTS]
            del self._events[:FLEET_MAX_EVENTS]
            self._timer = None
            self._last = time.monotonic()
            if self._events:  # more than one message holds: the rest one interval later
                self._start_timer(self.interval)
            if not events:
                return
            self.messages += 1
        message = batch_message(events)

        def send() -> Any:
            layer = get_channel_layer()
            return None if layer is None else layer.group_send(FLEET_GROUP, message)

        live.dispatcher().submit("fleet events", send)


_outbox = FleetOutbox()
os.register_at_fork(after_in_child=_outbox.reset)


def flush() -> None:
    """Hand this process's "fleet" events that wait for their interval to the delivery
    thread now (a process about to exit; tests)."""
    _outbox.flush()


atexit.register(flush)  # before the delivery thread drains (registered earlier)


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

"""What a sync is answered: the service's desired state, ``acked_through``,
``telemetry_through`` and the per-sync limits (so an agent can split a large process
over several syncs)."""

from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.core.signals import setting_changed
from django.db import connections
from django.db.models import Min
from django.utils import timezone

from controlplane.circuits.desired import build_desired_state, open_drills, open_overrides
from controlplane.circuits.drills import complete_due_drills
from controlplane.circuits.models import Service
from controlplane.circuits.operations import expire_overrides
from controlplane.circuits.watch import desired_state, in_db_read
from controlplane.circuits.watchhub import get_hub


def limits() -> dict[str, int]:
    """The limits of one sync, as agents read them."""
    return {
        "breakers": settings.SWITCHYARD_SYNC_MAX_BREAKERS,
        "transitions": settings.SWITCHYARD_SYNC_MAX_TRANSITIONS,
        "reports": settings.SWITCHYARD_SYNC_MAX_REPORTS,
        "body_bytes": settings.SWITCHYARD_SYNC_MAX_BODY_BYTES,
    }


# The encoded limits, read once per settings (emptied when a setting changes).
_limits: list[bytes] = []


def _settings_changed(**kwargs: Any) -> None:
    _limits.clear()


setting_changed.connect(_settings_changed)


def body(desired: bytes, acked_through: int, telemetry_through: int = 0) -> bytes:
    """The answer: the desired state's JSON object with ``acked_through``,
    ``telemetry_through`` and ``limits`` put in before its closing brace."""
    if not _limits:
        _limits.append(orjson.dumps(limits()))
    tail = b',"acked_through":%d,"telemetry_through":%d,"limits":%s}' % (
        acked_through,
        telemetry_through,
        _limits[0],
    )
    return b"".join((memoryview(desired)[:-1], tail))


def desired_now(service_id: int) -> bytes:
    """The desired state read from the database now, an override past its expiry and a
    drill past its end ended first (so its version moves and the watchers wake)."""
    now = timezone.now()
    if any(o.expires_at is not None and o.expires_at <= now for o in open_overrides(service_id)):
        expire_overrides(now=now, service_id=service_id)
    if any(d.ends_at <= now for d in open_drills(service_id)):
        complete_due_drills(now=now, service_id=service_id)
    return orjson.dumps(build_desired_state(service_id, now=now))


# The earliest end of an override or a drill not ended yet, by payload (the hub's bytes
# object changes when the state does): read from the database, not from the payload,
# which leaves out what was already past its end when it was built (a process started
# after a drill's end still ends it at the service's first sync).
_expiry: dict[int, tuple[bytes, datetime | None]] = {}


def _earliest_end(service_id: int) -> datetime | None:
    try:
        ends = [
            open_overrides(service_id).aggregate(at=Min("expires_at"))["at"],
            open_drills(service_id).aggregate(at=Min("ends_at"))["at"],
        ]
        return min((at for at in ends if at is not None), default=None)
    finally:
        connections.close_all()


async def desired_cached(service_id: int) -> bytes:
    """The hub's serialised desired state (rebuilt only when the version moves); read
    from the database when an override or a drill in it is past its end. Syncs that
    arrive together share each of these reads."""
    hub = get_hub()
    hub.listen()
    version = hub.current_version(service_id)
    if version is None:
        generation = hub.feed_generation()
        version = await in_db_read(("version", service_id), _read_version, service_id)
        hub.learn(service_id, version, generation)
    built, payload = await desired_state(service_id, version)
    cached = _expiry.get(service_id)
    if cached is None or cached[0] is not payload:
        end = await in_db_read(("end", service_id, built), _earliest_end, service_id)
        cached = (payload, end)
        _expiry[service_id] = cached
    expiry = cached[1]
    if expiry is not None and expiry <= timezone.now():
        return await in_db_read(("now", service_id, built), _desired_and_close, service_id)
    return payload


def _read_version(service_id: int) -> int:
    try:
        return int(
            Service.objects.filter(pk=service_id).values_list("desired_version", flat=True).get()
        )
    finally:
        connections.close_all()


def _desired_and_close(service_id: int) -> bytes:
    try:
        return desired_now(service_id)
    finally:
        connections.close_all()

"""``GET /api/v1/agent/watch?since=<desired_version>``: the agents' long poll.

An async view, so a held request costs a future on the event loop, not a thread.
It answers with the service's desired state as soon as its version moves past
``since``, or 204 after ``SWITCHYARD_WATCH_HOLD`` seconds (default 25).

At most one database round trip per watch (the token lookup, which also reads the
service's current version), and none for an agent coming back right after a change:
the token is cached briefly and the hub knows the version it just delivered, for as
long as its change feed has been unbroken. A change committed after the version was
read is either already announced to the hub (checked right after registering) or
wakes the waiter.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from controlplane.circuits.auth import authenticate_agent, bearer_token, hash_token
from controlplane.circuits.notify import get_hub

DEFAULT_HOLD = 25.0
MAX_SINCE = 2**63 - 1
# Database lookups of watch requests run on this many threads per process, which
# also caps the database connections that a burst of (re)connecting agents opens.
_DB_THREADS = 4
_executor = ThreadPoolExecutor(max_workers=_DB_THREADS, thread_name_prefix="switchyard-watch-db")


def hold_seconds() -> float:
    """How long a watch is held before 204 (setting SWITCHYARD_WATCH_HOLD)."""
    return float(getattr(settings, "SWITCHYARD_WATCH_HOLD", DEFAULT_HOLD))


def _error(status: int, field: str, reason: str) -> JsonResponse:
    return JsonResponse({"error": reason, "field": field}, status=status)


# Re-watching agents (a whole fleet, right after a change) are recognised without a
# database round trip: token -> service id for this long. A revoked token can keep
# watching (read only) for at most this long; syncs check it every time.
TOKEN_CACHE_SECONDS = 30.0
TOKEN_CACHE_MAX = 10_000
_token_cache: dict[str, tuple[int, float]] = {}


def _cached_service(raw_token: str) -> int | None:
    entry = _token_cache.get(hash_token(raw_token))
    if entry is None or entry[1] < time.monotonic():
        return None
    return entry[0]


def _cache_service(raw_token: str, service_id: int) -> None:
    if len(_token_cache) >= TOKEN_CACHE_MAX:
        _token_cache.clear()  # crude but bounded; it refills from the database
    _token_cache[hash_token(raw_token)] = (service_id, time.monotonic() + TOKEN_CACHE_SECONDS)


def _lookup(raw_token: str) -> tuple[int, int] | None:
    """(service id, current desired version) for an agent token, or None if refused."""
    try:
        token = authenticate_agent(raw_token)
        if token is None:
            return None
        return token.service_id, token.service.desired_version
    finally:
        # The request is about to be held: it must not keep a connection meanwhile.
        connections.close_all()


def _build(service_id: int) -> tuple[int, bytes]:
    from controlplane.circuits.desired import build_desired_state

    try:
        desired = build_desired_state(service_id)
        return int(desired["desired_version"]), json.dumps(desired, separators=(",", ":")).encode()
    finally:
        connections.close_all()


async def _payload(service_id: int, version: int) -> bytes:
    """The desired state at ``version`` or later: the hub's copy, else built now."""
    hub = get_hub()
    payload = hub.payload(service_id, version)
    if payload is None:
        generation = hub.feed_generation()
        built_version, payload = await _in_db_thread(_build, service_id)
        hub.remember_payload(service_id, built_version, payload, generation)
    return payload


async def _in_db_thread(func: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_executor, func, *args)


async def agent_watch(request: HttpRequest) -> HttpResponse:
    """Hold until the desired state of the token's service moves past ``since``."""
    if request.method != "GET":
        response = _error(405, "method", f"{request.method} is not allowed; use GET")
        response["Allow"] = "GET"
        return response
    raw = request.GET.get("since", "")
    try:
        since = int(raw)
    except ValueError:
        return _error(400, "since", f"must be an integer between 0 and {MAX_SINCE}, got {raw!r}")
    if not 0 <= since <= MAX_SINCE:
        return _error(400, "since", f"must be an integer between 0 and {MAX_SINCE}, got {since}")
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return _error(401, "Authorization", "an agent token is required (Bearer sya_...)")

    hub = get_hub()
    generation = hub.feed_generation()  # before any database read
    service_id = _cached_service(token)
    current = hub.current_version(service_id) if service_id is not None else None
    if service_id is None or current is None:
        found = await _in_db_thread(_lookup, token)
        if found is None:
            return _error(401, "Authorization", "invalid or revoked agent token")
        service_id, current = found
        _cache_service(token, service_id)
        hub.learn(service_id, current, generation)
    if current > since:
        return _desired_response(await _payload(service_id, current))
    waiter = hub.register(service_id, since)
    try:
        # A change committed after the lookup but announced before the registration
        # is caught here; one announced after it wakes the waiter.
        announced = hub.announced(service_id)
        if announced > since:
            return _desired_response(await _payload(service_id, announced))
        try:
            payload = await asyncio.wait_for(asyncio.shield(waiter.future), hold_seconds())
        except TimeoutError:
            return HttpResponse(status=204)
        return _desired_response(payload)
    finally:
        hub.unregister(waiter)


def _desired_response(payload: bytes) -> HttpResponse:
    response = HttpResponse(payload, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


# Included by the project's URL config under api/v1/agent/.
urlpatterns = [path("watch", agent_watch, name="agent-watch")]

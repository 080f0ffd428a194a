"""``GET /api/v1/agent/watch?since=<desired_version>``: the agents' long poll.

An async view, so a held request costs a future on the event loop, not a thread.
It answers with the service's desired state as soon as its version moves past
``since``, or 204 after ``SWITCHYARD_WATCH_HOLD`` seconds (default 25).

One database round trip per watch: the token lookup also reads the service's
current version. A change committed after that read is either already announced
to this process's hub (checked right after registering) or wakes the waiter.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from controlplane.circuits.auth import authenticate_agent, bearer_token
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


def _build(service_id: int) -> bytes:
    from controlplane.circuits.desired import build_desired_state

    try:
        return json.dumps(build_desired_state(service_id), separators=(",", ":")).encode()
    finally:
        connections.close_all()


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

    found = await _in_db_thread(_lookup, token)
    if found is None:
        return _error(401, "Authorization", "invalid or revoked agent token")
    service_id, current = found
    if current > since:
        return _desired_response(await _in_db_thread(_build, service_id))
    hub = get_hub()
    waiter = hub.register(service_id, since)
    try:
        # A change committed after the lookup but announced before the registration
        # is caught here; one announced after it wakes the waiter.
        if hub.announced(service_id) > since:
            return _desired_response(await _in_db_thread(_build, service_id))
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

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
import contextlib
import functools
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve

from controlplane.circuits.watchhub import get_hub
from controlplane.core.errors import CREDENTIALS_FIELD, NON_FIELD, error_body

# controlplane.circuits.auth (models) is imported where used: controlplane.asgi imports
# this module right after Django is set up, before the app registry is used.

DEFAULT_HOLD = 25.0
MAX_SINCE = 2**63 - 1
# Database lookups of watch requests run on this many threads per process, which
# also caps the database connections that a burst of (re)connecting agents opens.
_DB_THREADS = 4
_executor = ThreadPoolExecutor(max_workers=_DB_THREADS, thread_name_prefix="switchyard-watch-db")


def hold_seconds() -> float:
    """How long a watch is held before 204 (setting SWITCHYARD_WATCH_HOLD)."""
    return float(getattr(settings, "SWITCHYARD_WATCH_HOLD", DEFAULT_HOLD))


Answer = tuple[int, bytes, dict[str, str]]  # status, body, extra headers


def _error(status: int, field: str, reason: str, **headers: str) -> Answer:
    body = json.dumps(error_body({field: reason})).encode()
    return status, body, headers


# Re-watching agents (a whole fleet, right after a change) are recognised without a
# database round trip: token -> service id for this long. A revoked token can keep
# watching (read only) for at most this long; syncs check it every time.
TOKEN_CACHE_SECONDS = 30.0
TOKEN_CACHE_MAX = 10_000
_token_cache: dict[str, tuple[int, float]] = {}


def _cached_service(raw_token: str) -> int | None:
    from controlplane.circuits.auth import hash_token

    entry = _token_cache.get(hash_token(raw_token))
    if entry is None or entry[1] < time.monotonic():
        return None
    return entry[0]


def _cache_service(raw_token: str, service_id: int) -> None:
    from controlplane.circuits.auth import hash_token

    if len(_token_cache) >= TOKEN_CACHE_MAX:
        _token_cache.clear()  # crude but bounded; it refills from the database
    _token_cache[hash_token(raw_token)] = (service_id, time.monotonic() + TOKEN_CACHE_SECONDS)


def _lookup(raw_token: str) -> tuple[int, int] | None:
    """(service id, current desired version) for an agent token, or None if refused."""
    from controlplane.circuits.auth import authenticate_agent

    try:
        token = authenticate_agent(raw_token)
        if token is None:
            return None
        return token.service_id, token.service.desired_version
    finally:
        # The request is about to be held: it must not keep a connection meanwhile.
        connections.close_all()


_inflight: dict[tuple[int, str], asyncio.Task[tuple[int, int] | None]] = {}


async def _lookup_once(raw_token: str) -> tuple[int, int] | None:
    """:func:`_lookup`, shared by concurrent watches of the same token: when the cache
    entry of a fleet's token expires, a thousand re-watching agents make one query.
    The query runs as its own task, so one watcher going away cancels nobody's."""
    from controlplane.circuits.auth import hash_token

    key = (id(asyncio.get_running_loop()), hash_token(raw_token))
    task = _inflight.get(key)
    if task is None:
        task = asyncio.ensure_future(_in_db_thread(_lookup, raw_token))
        _inflight[key] = task
        task.add_done_callback(lambda _: _inflight.pop(key, None))
    return await asyncio.shield(task)


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


async def watch(method: str, since_raw: str, authorization: str | None) -> Answer:
    """The long poll itself, independent of how the request arrived."""
    from controlplane.circuits.auth import bearer_token

    if method != "GET":
        return _error(405, NON_FIELD, f'Method "{method}" not allowed.', Allow="GET")
    try:
        since = int(since_raw)
    except ValueError:
        return _error(
            400, "since", f"must be an integer between 0 and {MAX_SINCE}, got {since_raw!r}"
        )
    if not 0 <= since <= MAX_SINCE:
        return _error(400, "since", f"must be an integer between 0 and {MAX_SINCE}, got {since}")
    token = bearer_token(authorization)
    if token is None:
        return _error(
            401,
            CREDENTIALS_FIELD,
            "send an agent token as 'Authorization: Bearer sya_...'",
            **{"WWW-Authenticate": 'Bearer realm="agent"'},
        )

    hub = get_hub()
    generation = hub.feed_generation()  # before any database read
    service_id = _cached_service(token)
    current = hub.current_version(service_id) if service_id is not None else None
    if service_id is None or current is None:
        found = await _lookup_once(token)
        if found is None:
            return _error(
                401,
                CREDENTIALS_FIELD,
                "invalid or revoked agent token",
                **{"WWW-Authenticate": 'Bearer realm="agent", error="invalid_token"'},
            )
        service_id, current = found
        _cache_service(token, service_id)
        hub.learn(service_id, current, generation)
    if current > since:
        return _desired(await _payload(service_id, current))
    waiter = hub.register(service_id, since)
    try:
        # A change committed after the lookup but announced before the registration
        # is caught here; one announced after it wakes the waiter.
        announced = hub.announced(service_id)
        if announced > since:
            return _desired(await _payload(service_id, announced))
        try:
            payload = await asyncio.wait_for(asyncio.shield(waiter.future), hold_seconds())
        except TimeoutError:
            return 204, b"", {}
        return _desired(payload)
    finally:
        hub.unregister(waiter)


def _desired(payload: bytes) -> Answer:
    return 200, payload, {"Cache-Control": "no-store"}


def _response(answer: Answer) -> HttpResponse:
    status, body, headers = answer
    response = HttpResponse(body, status=status)
    if body:
        response["Content-Type"] = "application/json"
        response["Content-Length"] = str(len(body))
    else:
        del response["Content-Type"]
    for name, value in headers.items():
        response[name] = value
    return response


async def agent_watch(request: HttpRequest) -> HttpResponse:
    """The watch view: hold until the token's service's desired state moves past ``since``.

    Routed once, in ``controlplane/urls.py``; :class:`WatchFastPath` serves the same
    route ahead of the middleware stack when the project runs under ASGI.
    """
    return _response(
        await watch(
            request.method or "",
            request.GET.get("since", ""),
            request.headers.get("Authorization"),
        )
    )


@functools.lru_cache(maxsize=4096)
def _routes_to_watch(urlconf: str, path_info: str) -> bool:
    try:
        return resolve(path_info, urlconf).func is agent_watch
    except Resolver404:
        return False


def _no_response(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the fast path answers itself")  # pragma: no cover


class WatchFastPath:
    """ASGI wrapper that serves the watch view directly and passes all else to ``app``.

    Django runs every ``MiddlewareMixin`` middleware of an async request through a
    thread (twice), a dozen thread hops per request: a thousand agents woken at once
    then queue behind each other for seconds. The watch needs none of that stack
    (it authenticates by its own bearer token, sets no cookies, renders nothing), so
    here it answers from the event loop alone, with what still applies: host
    validation and Django's ``SecurityMiddleware`` (SSL redirect, HSTS, nosniff,
    referrer and opener policies, all per settings).

    Which requests it takes is read from the project's URL configuration: whatever
    resolves to :func:`agent_watch`, so there is one route and a moved prefix moves
    both. ``controlplane/asgi.py`` mounts it: ``"http": WatchFastPath(django_asgi_app)``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _routes_to_watch(
            settings.ROOT_URLCONF, _path_info(scope)
        ):
            await self.app(scope, receive, send)
            return
        request = ASGIRequest(scope, io.BytesIO())
        security = SecurityMiddleware(_no_response)
        try:
            request.get_host()  # validates the Host header against ALLOWED_HOSTS
        except DisallowedHost:
            response = _response(_error(400, "host", "host not allowed"))
        else:
            redirect = security.process_request(request)
            if redirect is not None:
                response = redirect
            else:
                answer = await _until_disconnect(
                    watch(
                        request.method or "",
                        request.GET.get("since", ""),
                        request.headers.get("Authorization"),
                    ),
                    receive,
                )
                if answer is None:
                    return  # the client went away: nobody to answer
                response = _response(answer)
        security.process_response(request, response)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in response.items()
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


def _path_info(scope: dict[str, Any]) -> str:
    # As Django's ASGIRequest computes it: the path below the mount point (root_path).
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path.removeprefix(root) if root and path.startswith(root) else path


async def _until_disconnect(call: Any, receive: Any) -> Answer | None:
    """Await ``call``; None (and ``call`` cancelled) if the client disconnects first,
    so a departed agent's long poll frees its waiter at once."""
    task = asyncio.ensure_future(call)
    disconnect = asyncio.ensure_future(_wait_for_disconnect(receive))
    done, _ = await asyncio.wait({task, disconnect}, return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    disconnect.cancel()
    result: Answer = task.result()
    return result


async def _wait_for_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return

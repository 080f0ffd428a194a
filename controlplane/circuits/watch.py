"""``GET /api/v1/agent/watch?since=<desired_version>``: the agents' long poll.

An async view, so a held request costs a future on the event loop, not a thread.
It answers with the service's desired state as soon as its version moves past
``since``, or 204 after ``SWITCHYARD_WATCH_HOLD`` seconds (default 25), or at once
when the server stops (``controlplane.serve``: :meth:`WatchHub.release`).

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
import json
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar, cast

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse

from controlplane.circuits import ratelimit
from controlplane.circuits.fastpath import Answer, FastPath, Handler, View, as_response, has_body
from controlplane.circuits.watchhub import RELEASED, get_hub
from controlplane.core.errors import CREDENTIALS_FIELD, NON_FIELD, ApiError

# controlplane.circuits.auth (models) is imported where used: controlplane.asgi imports
# this module right after Django is set up, before the app registry is used.

DEFAULT_HOLD = 25.0
MAX_SINCE = 2**63 - 1
MAX_INSTANCE = 200  # characters of the instance id (the sync's limit)
# Database lookups of watch requests run on this many threads per process, which
# also caps the database connections that a burst of (re)connecting agents opens.
_DB_THREADS = 4
_executor = ThreadPoolExecutor(max_workers=_DB_THREADS, thread_name_prefix="switchyard-watch-db")


def hold_seconds() -> float:
    """How long a watch is held before 204 (setting SWITCHYARD_WATCH_HOLD)."""
    return float(getattr(settings, "SWITCHYARD_WATCH_HOLD", DEFAULT_HOLD))


class TokenInfo(NamedTuple):
    """What an agent token stands for: its service, and that service's desired version
    when the token was looked up."""

    service_id: int
    service: str
    desired_version: int


# Agents (a whole fleet re-watching right after a change, or syncing every few seconds)
# are recognised without a database round trip: token hash -> (service id, name, when
# looked up). Each reader bounds the age it accepts: a revoked token can keep watching
# (read only) for at most TOKEN_CACHE_SECONDS, and keep syncing for at most
# SWITCHYARD_SYNC_TOKEN_SECONDS (controlplane.circuits.sync.route).
TOKEN_CACHE_SECONDS = 30.0
TOKEN_CACHE_MAX = 10_000
_token_cache: dict[str, tuple[int, str, float]] = {}


def token_key(raw_token: str) -> str:
    """The cache key of a token (its stored hash)."""
    from controlplane.circuits.auth import hash_token

    return hash_token(raw_token)


def cached_token(key: str, max_age: float) -> tuple[int, str] | None:
    """(service id, service name) of a token looked up at most ``max_age`` seconds ago."""
    entry = _token_cache.get(key)
    if entry is None or entry[2] + max_age < time.monotonic():
        return None
    return entry[0], entry[1]


def _cache_token(key: str, info: TokenInfo, looked_up: float) -> None:
    if len(_token_cache) >= TOKEN_CACHE_MAX:
        _token_cache.clear()  # crude but bounded; it refills from the database
    _token_cache[key] = (info.service_id, info.service, looked_up)


def forget_tokens() -> None:
    """Empty the token cache (tests)."""
    _token_cache.clear()


def _lookup(raw_token: str) -> TokenInfo | None:
    """The service of an agent token and its current desired version, or None if refused."""
    from controlplane.circuits.auth import authenticate_agent

    try:
        token = authenticate_agent(raw_token)
        if token is None:
            return None
        return TokenInfo(token.service_id, token.service.name, token.service.desired_version)
    finally:
        # The request is about to be held: it must not keep a connection meanwhile.
        connections.close_all()


async def lookup_token(raw_token: str) -> TokenInfo | None:
    """:func:`_lookup`, shared by concurrent requests with the same token (:func:`shared`):
    when the cache entry of a fleet's token expires, a thousand agents make one query.
    Caches the answer."""
    key = token_key(raw_token)
    info, looked_up = await shared(("token", key), _timed_lookup, raw_token)
    if info is not None:
        _cache_token(key, info, looked_up)
    return info


T = TypeVar("T")
_inflight: dict[tuple[int, Hashable], asyncio.Task[Any]] = {}


async def shared(key: Hashable, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await func(*args)``, once for all the callers on this event loop that ask for
    the same ``key`` while it runs: a fleet woken or syncing at once makes one database
    read of a thing, not one per agent (and does not queue on the database threads).
    The read runs as its own task, so one caller going away cancels nobody's."""
    loop_key = (id(asyncio.get_running_loop()), key)
    task = _inflight.get(loop_key)
    if task is None:
        task = asyncio.ensure_future(func(*args))
        _inflight[loop_key] = task

        def done(finished: asyncio.Task[Any]) -> None:
            if _inflight.get(loop_key) is finished:
                del _inflight[loop_key]

        task.add_done_callback(done)
    return cast(T, await asyncio.shield(task))


async def _timed_lookup(raw_token: str) -> tuple[TokenInfo | None, float]:
    # The entry's age counts from before the query: a revocation committed while it
    # ran is honoured within the bound.
    started = time.monotonic()
    return await in_db_thread(_lookup, raw_token), started


def _build(service_id: int) -> tuple[int, bytes]:
    from controlplane.circuits.desired import build_desired_state

    try:
        desired = build_desired_state(service_id)
        return int(desired["desired_version"]), json.dumps(desired, separators=(",", ":")).encode()
    finally:
        connections.close_all()


async def desired_state(service_id: int, version: int) -> tuple[int, bytes]:
    """(version, payload) of the desired state: the hub's copy at ``version``, else built
    now from the database, whose version may be lower than ``version`` when that came
    from an announcement nothing in the database backs (the hub then forgets it)."""
    hub = get_hub()
    payload = hub.payload(service_id, version)
    if payload is not None:
        return version, payload
    # Concurrent callers asking for the same version share one build: it starts after
    # each of them learned of ``version``, so it reads that version or a later one.
    return await shared(("desired", service_id, version), _built, service_id)


async def _built(service_id: int) -> tuple[int, bytes]:
    hub = get_hub()
    generation = hub.feed_generation()
    mark = hub.mark()
    built_version, payload = await in_db_thread(_build, service_id)
    hub.remember_payload(service_id, built_version, payload, generation)
    hub.settle(service_id, built_version, mark)
    return built_version, payload


async def in_db_read(key: Hashable, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` on the database threads, shared by concurrent callers (:func:`shared`)."""
    return await shared(key, in_db_thread, func, *args)


async def in_db_thread(func: Any, *args: Any) -> Any:
    """Run ``func`` on the agent routes' database threads."""
    return await asyncio.get_running_loop().run_in_executor(_executor, func, *args)


async def watch(
    method: str, since_raw: str, authorization: str | None, instance: str = ""
) -> Answer:
    """The long poll itself, independent of how the request arrived. ``instance`` is the
    instance id the agent names (query parameter ``instance``; older agents send none):
    the key of the per-instance rate limit."""
    from controlplane.circuits.auth import bearer_token

    if method != "GET":
        raise ApiError(405, {NON_FIELD: f'Method "{method}" not allowed.'}, Allow="GET")
    try:
        since = int(since_raw)
    except ValueError:
        raise ApiError(
            400, {"since": f"must be an integer between 0 and {MAX_SINCE}, got {since_raw!r}"}
        ) from None
    if not 0 <= since <= MAX_SINCE:
        raise ApiError(400, {"since": f"must be an integer between 0 and {MAX_SINCE}, got {since}"})
    if len(instance) > MAX_INSTANCE:
        raise ApiError(400, {"instance": f"must be at most {MAX_INSTANCE} characters"})
    token = bearer_token(authorization)
    if token is None:
        raise ApiError(
            401,
            {CREDENTIALS_FIELD: "send an agent token as 'Authorization: Bearer sya_...'"},
            **{"WWW-Authenticate": 'Bearer realm="agent"'},
        )

    hub = get_hub()
    generation = hub.feed_generation()  # before any database read
    key = token_key(token)
    cached = cached_token(key, TOKEN_CACHE_SECONDS)
    service_id = None if cached is None else cached[0]
    current = hub.current_version(service_id) if service_id is not None else None
    if service_id is None or current is None:
        found = await lookup_token(token)
        if found is None:
            raise ApiError(
                401,
                {CREDENTIALS_FIELD: "invalid or revoked agent token"},
                **{"WWW-Authenticate": 'Bearer realm="agent", error="invalid_token"'},
            )
        service_id, current = found.service_id, found.desired_version
        hub.learn(service_id, current, generation)
    _check_rate(key, instance)
    # A version heard from the change feed is checked against the database (the build)
    # before it answers: only the built version decides.
    if current > since:
        version, payload = await desired_state(service_id, current)
        if version > since:
            return _desired(payload)
    waiter = hub.register(service_id, since)
    try:
        # A change committed after the lookup but announced before the registration
        # is caught here; one announced after it wakes the waiter.
        announced = hub.announced(service_id)
        if announced > since:
            version, payload = await desired_state(service_id, announced)
            if version > since:
                return _desired(payload)
        try:
            payload = await asyncio.wait_for(asyncio.shield(waiter.future), hold_seconds())
        except TimeoutError:
            return Answer(204, b"")
        if payload == RELEASED:  # the server is stopping: the agent watches again
            return Answer(204, b"")
        return _desired(payload)
    finally:
        hub.unregister(waiter)


def _check_rate(key: str, instance: str) -> None:
    """A 429 when this instance's or this token's watch budget is spent. The instance's
    comes first, so that a spinning instance spends its own budget, not its fleet's."""
    wait = 0.0
    if instance:
        wait = ratelimit.limiter("watch_instance").take((key, instance))
        what = f"from instance {instance!r}"
    if not wait:
        wait = ratelimit.limiter("watch").take(key)
        what = "with this agent token"
    if wait:
        status, errors, headers = ratelimit.too_many(wait, what)
        raise ApiError(status, errors, **headers)


def _desired(payload: bytes) -> Answer:
    return Answer(200, payload, (("Cache-Control", "no-store"),))


async def answer_watch(
    method: str, since_raw: str, authorization: str | None, instance: str = ""
) -> HttpResponse | Answer:
    """:func:`watch`, its refusals rendered in the error shape."""
    try:
        return await watch(method, since_raw, authorization, instance)
    except ApiError as exc:
        return exc.response()


async def agent_watch(request: HttpRequest) -> HttpResponse:
    """The watch view: hold until the token's service's desired state moves past ``since``.

    Routed once, in ``controlplane/urls.py``; :class:`WatchFastPath` serves the same
    route ahead of the middleware stack when the project runs under ASGI.
    """
    return as_response(
        await answer_watch(
            request.method or "",
            request.GET.get("since", ""),
            request.headers.get("Authorization"),
            request.GET.get("instance", ""),
        )
    )


class WatchFastPath(FastPath):
    """Serves the watch ahead of the middleware stack (see :mod:`.fastpath`): a thousand
    agents woken at once are answered from the event loop, not queued behind thread hops.
    ``controlplane.circuits.sync.route.AgentFastPath`` adds the sync to the same mechanism."""

    def routes(self) -> Mapping[View, Handler]:
        return {agent_watch: _serve_watch}


async def _serve_watch(request: ASGIRequest, receive: Any) -> HttpResponse | Answer | None:
    if has_body(request):
        # Never read (a held watch would otherwise take it in while it waits).
        return ApiError(413, {"body": "the watch takes no request body"}).response()
    answer = await until_disconnect(
        answer_watch(
            request.method or "",
            request.GET.get("since", ""),
            request.headers.get("Authorization"),
            request.GET.get("instance", ""),
        ),
        receive,
    )
    return answer


async def until_disconnect(call: Any, receive: Any) -> Any:
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
    return task.result()


async def _wait_for_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return

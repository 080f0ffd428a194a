"""``POST /api/v1/agent/sync``: authenticate, read, parse -> store -> answer.

One pipeline, :func:`handle`, run two ways:

* under ASGI, :class:`AgentFastPath` serves the route on the event loop ahead of
  Django's middleware stack (see :mod:`controlplane.circuits.fastpath`): the token is
  cached for ``SWITCHYARD_SYNC_TOKEN_SECONDS``, the sync goes to the process's
  :class:`~.store.GroupCommit`, the desired state is the watch hub's serialised copy;
* as the Django view :func:`agent_sync` (WSGI, the test client), each step runs in the
  request's thread and transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from controlplane.circuits import ratelimit
from controlplane.circuits.fastpath import Answer, Handler, View, as_response
from controlplane.circuits.sync import answer
from controlplane.circuits.sync.parse import SyncError, parse
from controlplane.circuits.sync.store import Item, get_group_commit, get_store
from controlplane.circuits.watch import WatchFastPath, cached_token, lookup_token, token_key
from controlplane.core.errors import CREDENTIALS_FIELD, NON_FIELD, ApiError


class TooLarge(Exception):
    """The body passed the sync's limit while it was read."""


class Runner:
    """How each step of :func:`handle` runs: the Django view's way (the request's thread
    and transaction) unless a subclass says otherwise."""

    async def service_of(self, raw_token: str, key: str) -> tuple[int, str] | None:
        """(service id, name) of the agent token (``key``: its hash), None if refused."""
        from controlplane.circuits.auth import authenticate_agent

        token = await sync_to_async(authenticate_agent)(raw_token)
        return None if token is None else (token.service_id, token.service.name)

    async def store(self, item: Item) -> None:
        await sync_to_async(get_store().write)([item])

    async def desired(self, service_id: int) -> bytes:
        return bytes(await sync_to_async(answer.desired_now)(service_id))


class EventLoopRunner(Runner):
    """The fast path's way: cached tokens, group commit, the hub's desired state."""

    async def service_of(self, raw_token: str, key: str) -> tuple[int, str] | None:
        found = cached_token(key, float(settings.SWITCHYARD_SYNC_TOKEN_SECONDS))
        if found is None:
            info = await lookup_token(raw_token)
            found = None if info is None else (info.service_id, info.service)
        return found

    async def store(self, item: Item) -> None:
        await get_group_commit().accept(item)

    async def desired(self, service_id: int) -> bytes:
        return await answer.desired_cached(service_id)


async def handle(
    method: str,
    meta: Mapping[str, Any],
    read_body: Callable[[int], Awaitable[bytes | None]],
    runner: Runner,
) -> HttpResponse | Answer | None:
    """The sync: every refusal an :class:`ApiError` in the one error shape; None when the
    client went away before its body arrived."""
    try:
        return await _handle(method, meta, read_body, runner)
    except ApiError as exc:
        return exc.response()


async def _handle(
    method: str,
    meta: Mapping[str, Any],
    read_body: Callable[[int], Awaitable[bytes | None]],
    runner: Runner,
) -> Answer | None:
    from controlplane.circuits.auth import bearer_token

    if method != "POST":
        raise ApiError(405, {NON_FIELD: f'Method "{method}" not allowed.'}, Allow="POST")
    raw_token = bearer_token(meta.get("HTTP_AUTHORIZATION"))
    if raw_token is None:
        raise ApiError(
            401,
            {CREDENTIALS_FIELD: "send an agent token as 'Authorization: Bearer sya_...'"},
            **{"WWW-Authenticate": 'Bearer realm="agent"'},
        )
    key = token_key(raw_token)
    found = await runner.service_of(raw_token, key)
    if found is None:
        raise ApiError(
            401,
            {CREDENTIALS_FIELD: "invalid or revoked agent token"},
            **{"WWW-Authenticate": 'Bearer realm="agent", error="invalid_token"'},
        )
    service_id, service = found
    wait = ratelimit.limiter("sync").take(key)
    if wait:
        status, errors, extra = ratelimit.too_many(wait, "with this agent token")
        raise ApiError(status, errors, **extra)
    limit = settings.SWITCHYARD_SYNC_MAX_BODY_BYTES
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, {"body": "Content-Length is not an integer"}) from None
    if declared > limit:
        raise ApiError(413, {"body": f"at most {limit} bytes per sync, got {declared}"})
    try:
        body = await read_body(limit)
    except TooLarge:
        raise ApiError(413, {"body": f"at most {limit} bytes per sync"}) from None
    if body is None:
        return None
    sync = parse(body)
    if sync.service is not None and sync.service != service:
        raise ApiError(
            403, {"service": f"this token belongs to service {service!r}, not {sync.service!r}"}
        )
    item = Item(service_id, service, sync, timezone.now())
    await runner.store(item)
    if item.error is not None:
        raise item.error
    desired = await runner.desired(service_id)
    return Answer(200, answer.body(desired, item.acked_through, item.telemetry_through))


@csrf_exempt
async def agent_sync(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/agent/sync: store an agent's sync, answer its service's desired state."""

    async def read_body(limit: int) -> bytes:
        try:
            body = request.body
        except RequestDataTooBig:
            raise TooLarge from None
        if len(body) > limit:
            raise TooLarge
        return body

    result = await handle(request.method or "", request.META, read_body, Runner())
    assert result is not None  # the view reads its body before anything can go away
    return as_response(result)


async def _serve(request: ASGIRequest, receive: Any) -> HttpResponse | Answer | None:
    async def read_body(limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    return await handle(request.method or "", request.META, read_body, EventLoopRunner())


class AgentFastPath(WatchFastPath):
    """The agent routes ahead of Django's stack: the watch and the sync.

    ``controlplane/asgi.py`` mounts it: ``"http": AgentFastPath(django_asgi_app)``.
    """

    def routes(self) -> Mapping[View, Handler]:
        return {**super().routes(), agent_sync: _serve}


__all__ = ["AgentFastPath", "SyncError", "agent_sync", "handle"]

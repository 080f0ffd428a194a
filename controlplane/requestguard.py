"""ASGI wrapper in front of Django: request bodies are size-checked, and on the API
authenticated, before a byte of them is read.

Django's ``ASGIHandler`` reads the whole body (spooling it to a temporary file) before
any middleware, view or DRF authentication runs, so without this a client with no
credentials could upload any amount before being told 401. :class:`RequestGuard` sits
between the agents' fast path and Django (``controlplane/asgi.py``) and, for every HTTP
request that reaches Django:

* refuses a declared ``Content-Length`` above ``SWITCHYARD_MAX_BODY_BYTES`` (default
  1 MiB) with ``413`` (field ``body``), before reading anything;
* counts the bytes of a body streamed without a length (chunked) and answers ``413``
  as soon as they pass the limit (Django is told the client went away);
* for a ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` under ``/api/``: answers ``401``
  (the API's shape and ``WWW-Authenticate: Bearer realm="api"`` challenge) before
  reading the body when the request carries neither a session cookie nor a bearer
  token, or when its bearer token is not an active personal API token (``syu_...``):
  unknown, revoked, or past its expiry (the reason DRF gives, "API token expired at ...").

A request with a session cookie goes on to Django, whose session, CSRF and permission
checks decide (its body is bounded by the limit above). A valid API token is
remembered for :data:`TOKEN_CACHE_SECONDS` (30 s), with its expiry, so that scripts cost
no extra query and a token that expires meanwhile is refused at once; the guard only
decides whether the body is read: DRF checks the token again on every request, so a
token revoked within that window has its body (at most the limit) read and is then
refused by DRF, as before. An unknown or revoked token costs one indexed
query, on a small pool of threads of its own.

Refusals carry ``Connection: close``. The answer is sent whole at once; then the rest
of the body is read and discarded, at most ``SWITCHYARD_BODY_DRAIN_BYTES`` (default
16 MiB) for at most ``SWITCHYARD_BODY_DRAIN_SECONDS`` (default 10), before the
connection is closed, so that a client that writes its whole body before reading the
answer gets to read it (a close on unread bytes resets the connection, and a reset can
discard the answer). A body declared longer than that bound is not read at all. The
agent routes are not behind this guard: the fast path
(``controlplane/circuits/fastpath.py``) checks their token and their own size limit
before reading, in the same way, and refuses in the same way (``send_refusal``).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http.cookie import parse_cookie
from django.utils import timezone

from controlplane.circuits.fastpath import BodyReader, path_info, send_refusal
from controlplane.core.errors import (
    CREDENTIALS_FIELD,
    NON_FIELD,
    UNAVAILABLE_REASON,
    UNAVAILABLE_RETRY_AFTER,
    database_unavailable,
    error_body,
)

# Methods whose requests carry a body under /api/ (the API's writes).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A valid personal API token is trusted this long by the guard (DRF checks it anyway).
TOKEN_CACHE_SECONDS = 30.0
TOKEN_CACHE_MAX = 10_000


@dataclass(frozen=True)
class FoundToken:
    """An unrevoked personal API token of an active user, as the guard remembers it."""

    expires_at: datetime | None


# token hash -> (when looked up (monotonic), the token found)
_valid_tokens: dict[str, tuple[float, FoundToken]] = {}
# Lookups of tokens the guard has not seen run here (not on the agents' threads).
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="switchyard-guard-db")

# DRF's messages, so that the answer is the one the API gives after reading the body.
NOT_PROVIDED = "Authentication credentials were not provided."
NOT_API_TOKEN = "Bearer token is not a personal API token (syu_...)."
INVALID_TOKEN = "Invalid or revoked API token."


def max_body_bytes() -> int:
    """The largest request body (setting SWITCHYARD_MAX_BODY_BYTES)."""
    return int(settings.SWITCHYARD_MAX_BODY_BYTES)


def forget_tokens() -> None:
    """Empty the cache of valid API tokens (tests)."""
    _valid_tokens.clear()


def _find_api_token(raw_token: str) -> FoundToken | None:
    from controlplane.circuits.auth import find_api_token

    try:
        token = find_api_token(raw_token)
        return None if token is None else FoundToken(expires_at=token.expires_at)
    finally:
        connections.close_all()


def _refusal(found: FoundToken) -> str | None:
    from controlplane.circuits.auth import expired_reason

    if found.expires_at is not None and found.expires_at <= timezone.now():
        return expired_reason(found.expires_at)
    return None


async def api_token_refusal(raw_token: str) -> str | None:
    """None when ``raw_token`` is an active personal API token (cached when it is), else
    the reason it is refused (DRF's words)."""
    from controlplane.circuits.auth import hash_token

    key = hash_token(raw_token)
    cached = _valid_tokens.get(key)
    if cached is not None and cached[0] + TOKEN_CACHE_SECONDS >= time.monotonic():
        return _refusal(cached[1])
    started = time.monotonic()
    loop_call = sync_to_async(_find_api_token, thread_sensitive=False, executor=_executor)
    found = await loop_call(raw_token)
    if found is None:
        return INVALID_TOKEN
    refusal = _refusal(found)
    if refusal is not None:
        return refusal
    if len(_valid_tokens) >= TOKEN_CACHE_MAX:
        _valid_tokens.clear()
    _valid_tokens[key] = (started, found)
    return None


class RequestGuard:
    """See the module docstring. ``RequestGuard(django_asgi_app)``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refuse = _Refusal(scope, BodyReader(receive), send)
        limit = max_body_bytes()
        length: bytes | None = None
        authorization: bytes | None = None
        cookie: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                authorization = value
            elif name == b"cookie":
                cookie = value
        declared: int | None = None
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await refuse(400, "body", "Content-Length is not an integer")
                return
            if declared > limit:
                await refuse(413, "body", f"at most {limit} bytes per request, got {declared}")
                return
        if scope["method"] in BODY_METHODS and path_info(scope).startswith("/api/"):
            try:
                refusal = await _credentials(authorization, cookie)
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                # The token cannot be checked: the same 503 Django's stack would give.
                await refuse(
                    503,
                    NON_FIELD,
                    UNAVAILABLE_REASON,
                    [(b"retry-after", str(UNAVAILABLE_RETRY_AFTER).encode())],
                )
                return
            if refusal is not None:
                reason, challenge = refusal
                await refuse(401, CREDENTIALS_FIELD, reason, [(b"www-authenticate", challenge)])
                return
        if declared is not None:
            # The server delivers at most the declared length: nothing more to count.
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
        """A body of no declared length: cut off past ``limit``."""
        received = 0
        over = False
        started = False
        reader = BodyReader(receive)

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message: dict[str, Any] = await reader()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django stops reading and answers nothing; the 413 is sent below.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watching_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, watching_send)
        if over and not started:
            await _Refusal(scope, reader, send)(413, "body", f"at most {limit} bytes per request")


async def _credentials(
    authorization: bytes | None, cookie: bytes | None
) -> tuple[str, bytes] | None:
    """None when the request may go on to Django; else the 401's reason and challenge."""
    from controlplane.circuits.auth import API_TOKEN_PREFIX, bearer_token

    raw = bearer_token(authorization.decode("latin-1")) if authorization else None
    if raw is not None:
        if not raw.startswith(API_TOKEN_PREFIX):
            return NOT_API_TOKEN, b'Bearer realm="api", error="invalid_token"'
        refusal = await api_token_refusal(raw)
        if refusal is not None:
            return refusal, b'Bearer realm="api", error="invalid_token"'
        return None
    if cookie and parse_cookie(cookie.decode("latin-1")).get(settings.SESSION_COOKIE_NAME):
        return None
    return NOT_PROVIDED, b'Bearer realm="api"'


class _Refusal:
    """Answers one request with the error shape (see ``send_refusal``)."""

    def __init__(self, scope: dict[str, Any], reader: BodyReader, send: Any) -> None:
        self.scope = scope
        self.reader = reader
        self.send = send

    async def __call__(
        self,
        status: int,
        field: str,
        reason: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(error_body({field: reason})).encode()
        all_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The rest of the body is drained, not parsed: the connection is not reused.
            (b"connection", b"close"),
            (b"x-content-type-options", b"nosniff"),
            *(headers or []),
        ]
        await send_refusal(self.scope, self.reader, self.send, status, all_headers, body)

"""Agent routes served ahead of Django's middleware stack, on the event loop.

Django runs every ``MiddlewareMixin`` middleware of an async request through a thread
(twice), a dozen thread hops per request: a fleet of agents then queues behind them.
The agent routes need none of that stack (they authenticate by their own bearer token,
set no cookies, render nothing), so :class:`FastPath` answers them from the event loop
alone, with what still applies: host validation and Django's ``SecurityMiddleware``
(SSL redirect, HSTS, nosniff, referrer and opener policies, all per settings). A
handler failing because the database is away answers the JSON 503 (with Retry-After)
of the rest of the API. A refusal sent before the body was read to its end reads and
discards the rest of it, within bounds, before the connection is closed
(:func:`send_refusal`): most clients read the answer only once they have sent the whole
body, and closing on unread bytes resets the connection under them.

Which requests it takes is read from the project's URL configuration: whatever resolves
to one of the views in :meth:`FastPath.routes`, so there is one route per endpoint and a
moved prefix moves both. Subclasses name their views and handlers
(``controlplane.circuits.watch.WatchFastPath``, ``controlplane.circuits.sync.route.AgentFastPath``).
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve

from controlplane.core.errors import database_unavailable, error_response, unavailable_response

logger = logging.getLogger(__name__)


class Answer(NamedTuple):
    """A handler's JSON answer, sent without building a Django response: its
    Content-Type and Content-Length, then the headers SecurityMiddleware would add (the
    same for every response of one request, so worked out once per settings and
    secure or not), then ``headers``. An empty ``content`` (a 204) has no Content-Type.
    Reads like a response: ``status_code``, ``content``."""

    status_code: int
    content: bytes
    headers: tuple[tuple[str, str], ...] = ()


def as_response(answer: HttpResponse | Answer) -> HttpResponse:
    """``answer`` as a Django response (a view's answer outside the fast path)."""
    if not isinstance(answer, Answer):
        return answer
    response = HttpResponse(answer.content, status=answer.status_code)
    if answer.content:
        response["Content-Type"] = "application/json"
        response["Content-Length"] = str(len(answer.content))
    else:
        del response["Content-Type"]
    for name, value in answer.headers:
        response[name] = value
    return response


# A handler answers one request (None: the client went away, nobody to answer).
Handler = Callable[[ASGIRequest, Any], Awaitable[HttpResponse | Answer | None]]
View = Callable[..., Any]
Headers = list[tuple[bytes, bytes]]

# SecurityMiddleware reads the settings when created: one per settings, and the headers
# it adds to a plain answer, by request.is_secure(). Emptied when a setting changes.
_security: list[SecurityMiddleware] = []
_security_headers: dict[bool, Headers] = {}
# Whether ALLOWED_HOSTS takes a request's host, by the headers get_host() reads: agents
# send the same few on every request. Bounded (the client chooses them: emptied when
# full). Emptied when a setting changes.
HOSTS_MAX = 1024
_hosts: dict[tuple[Any, ...], bool] = {}


def _settings_changed(**kwargs: Any) -> None:
    _security.clear()
    _security_headers.clear()
    _hosts.clear()


def host_allowed(request: HttpRequest) -> bool:
    """``request.get_host()`` succeeds (the Host header, or X-Forwarded-Host where
    trusted, is in ALLOWED_HOSTS), worked out once per distinct set of those headers."""
    meta = request.META
    key = (
        meta.get("HTTP_X_FORWARDED_HOST"),
        meta.get("HTTP_HOST"),
        meta.get("SERVER_NAME"),
        meta.get("SERVER_PORT"),
    )
    allowed = _hosts.get(key)
    if allowed is None:
        try:
            request.get_host()
            allowed = True
        except DisallowedHost:
            allowed = False
        if len(_hosts) >= HOSTS_MAX:
            _hosts.clear()
        _hosts[key] = allowed
    return allowed


setting_changed.connect(_settings_changed)


def _middleware() -> SecurityMiddleware:
    if not _security:
        _security.append(SecurityMiddleware(_no_response))
    return _security[0]


def _header_list(response: HttpResponse) -> Headers:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.items()
    ]


def _answer_headers(request: HttpRequest, answer: Answer) -> Headers:
    secure = request.is_secure()
    extra = _security_headers.get(secure)
    if extra is None:
        template = HttpResponse()
        del template["Content-Type"]
        _middleware().process_response(request, template)
        extra = _security_headers[secure] = _header_list(template)
    own = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers
    ]
    if not answer.content:
        return [*own, *extra]
    length = b"%d" % len(answer.content)
    return [(b"content-type", b"application/json"), (b"content-length", length), *own, *extra]


@functools.lru_cache(maxsize=4096)
def _resolved_view(urlconf: str, path_info: str) -> View | None:
    try:
        func: View = resolve(path_info, urlconf).func
    except Resolver404:
        return None
    return func


def _no_response(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the fast path answers itself")  # pragma: no cover


def path_info(scope: Mapping[str, Any]) -> str:
    """The path below the mount point (``root_path``), as Django's ASGIRequest computes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path.removeprefix(root) if root and path.startswith(root) else path


def has_body(request: HttpRequest) -> bool:
    """Whether the request carries a body (a non-zero length, or chunked)."""
    meta = request.META
    return meta.get("CONTENT_LENGTH") not in (None, "", "0") or "HTTP_TRANSFER_ENCODING" in meta


class BodyReader:
    """A request's ``receive`` that remembers whether it was called, and whether the body
    has been read to its end (or the client went away): what is left for a refusal."""

    __slots__ = ("_receive", "called", "ended")

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self.called = False
        self.ended = False

    async def __call__(self) -> dict[str, Any]:
        self.called = True
        message: dict[str, Any] = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.ended = True
        return message


def _drain_bound(scope: Mapping[str, Any], reader: BodyReader) -> int:
    """How many bytes of the body a refusal reads and discards: 0 for none (nothing
    left, a declared length past the bound, or a client waiting for ``100 Continue``)."""
    if reader.ended:
        return 0
    bound = int(settings.SWITCHYARD_BODY_DRAIN_BYTES)
    length: bytes | None = None
    chunked = expect = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"expect":
            expect = value.strip().lower() == b"100-continue"
    if expect and not reader.called:
        # The client sends no body before ``100 Continue``, which reading would send
        # after this answer: it reads the answer and sends nothing.
        return 0
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            return 0
        return bound if 0 < declared <= bound else 0
    # No length: chunked, or a body already being read (and not to its end).
    return bound if chunked or reader.called else 0


async def _drain(reader: BodyReader, bound: int) -> None:
    """Read and discard the body until its end, ``bound`` bytes or
    SWITCHYARD_BODY_DRAIN_SECONDS, whichever comes first."""
    taken = 0
    try:
        async with asyncio.timeout(float(settings.SWITCHYARD_BODY_DRAIN_SECONDS)):
            while taken <= bound and not reader.ended:
                message = await reader()
                taken += len(message.get("body", b""))
    except TimeoutError:
        pass


async def send_refusal(
    scope: Mapping[str, Any],
    reader: BodyReader,
    send: Any,
    status: int,
    headers: Headers,
    content: bytes,
) -> None:
    """Send a refusal (headers with ``Connection: close``) to a request whose body may be
    unread, then read and discard the rest of the body, at most
    SWITCHYARD_BODY_DRAIN_BYTES for at most SWITCHYARD_BODY_DRAIN_SECONDS, before the
    answer ends and the server closes the connection.

    The answer is complete (its Content-Length) before the draining begins, so a client
    that reads while it writes has it at once. One that writes its whole body first (most
    do) finishes writing and reads it; closing with its bytes unread instead resets the
    connection, and a reset can discard the answer before the client reads it. Past the
    bound (or a declared length past it) the connection is closed without reading more."""
    bound = _drain_bound(scope, reader)
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", b"%d" % len(content))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if not bound:
        await send({"type": "http.response.body", "body": content})
        return
    await send({"type": "http.response.body", "body": content, "more_body": True})
    await _drain(reader, bound)
    await send({"type": "http.response.body", "body": b""})


class FastPath:
    """ASGI wrapper that serves the views of :meth:`routes` itself and passes all else
    to ``app``. A handler gets the request (headers and query, no body) and ``receive``
    (to read the body or notice a disconnect). A refusal (400 or above) of a request with a
    body closes the connection once the rest of the body is drained (:func:`send_refusal`)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._routes = self.routes()

    def routes(self) -> Mapping[View, Handler]:
        """View function (as routed in the URL conf) -> the handler that serves it."""
        return {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = None
        if scope["type"] == "http":
            view = _resolved_view(settings.ROOT_URLCONF, path_info(scope))
            handler = self._routes.get(view) if view is not None else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = ASGIRequest(scope, io.BytesIO())
        reader = BodyReader(receive)
        security = _middleware()
        response: HttpResponse | Answer | None
        if not host_allowed(request):
            response = error_response(400, {"host": "host not allowed"})
        else:
            response = security.process_request(request)
            if response is None:
                try:
                    response = await handler(request, reader)
                except Exception as exc:
                    if not database_unavailable(exc):
                        raise
                    logger.warning("database unavailable: %s: %s", request.path, exc)
                    response = unavailable_response(request.path)
                if response is None:
                    return  # the client went away: nobody to answer
        if isinstance(response, Answer):
            headers = _answer_headers(request, response)
        else:
            security.process_response(request, response)
            if response.status_code >= 400 and has_body(request):
                # Refused, perhaps before its body was read: the rest of it is drained
                # (within bounds), then the connection is closed.
                response["Connection"] = "close"
                headers = _header_list(response)
                await send_refusal(
                    scope, reader, send, response.status_code, headers, response.content
                )
                return
            headers = _header_list(response)
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": response.content})

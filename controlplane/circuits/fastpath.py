"""Agent routes served ahead of Django's middleware stack, on the event loop.

Django runs every ``MiddlewareMixin`` middleware of an async request through a thread
(twice), a dozen thread hops per request: a fleet of agents then queues behind them.
The agent routes need none of that stack (they authenticate by their own bearer token,
set no cookies, render nothing), so :class:`FastPath` answers them from the event loop
alone, with what still applies: host validation and Django's ``SecurityMiddleware``
(SSL redirect, HSTS, nosniff, referrer and opener policies, all per settings). A
handler failing because the database is away answers the JSON 503 (with Retry-After)
of the rest of the API.

Which requests it takes is read from the project's URL configuration: whatever resolves
to one of the views in :meth:`FastPath.routes`, so there is one route per endpoint and a
moved prefix moves both. Subclasses name their views and handlers
(``controlplane.circuits.watch.WatchFastPath``, ``controlplane.circuits.sync.route.AgentFastPath``).
"""

from __future__ import annotations

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
    secure or not). Reads like a response: ``status_code``, ``content``."""

    status_code: int
    content: bytes


# A handler answers one request (None: the client went away, nobody to answer).
Handler = Callable[[ASGIRequest, Any], Awaitable[HttpResponse | Answer | None]]
View = Callable[..., Any]
Headers = list[tuple[bytes, bytes]]

# SecurityMiddleware reads the settings when created: one per settings, and the headers
# it adds to a plain answer, by request.is_secure(). Emptied when a setting changes.
_security: list[SecurityMiddleware] = []
_security_headers: dict[bool, Headers] = {}


def _settings_changed(**kwargs: Any) -> None:
    _security.clear()
    _security_headers.clear()


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
    length = b"%d" % len(answer.content)
    return [(b"content-type", b"application/json"), (b"content-length", length), *extra]


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


class FastPath:
    """ASGI wrapper that serves the views of :meth:`routes` itself and passes all else
    to ``app``. A handler gets the request (headers and query, no body) and ``receive``
    (to read the body or notice a disconnect)."""

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
        security = _middleware()
        response: HttpResponse | Answer | None
        try:
            request.get_host()  # validates the Host header against ALLOWED_HOSTS
        except DisallowedHost:
            response = error_response(400, {"host": "host not allowed"})
        else:
            response = security.process_request(request)
            if response is None:
                try:
                    response = await handler(request, receive)
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
                # Refused, perhaps before its body was read: closing the connection stops
                # the server from reading (and discarding) the rest of it.
                response["Connection"] = "close"
            headers = _header_list(response)
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": response.content})

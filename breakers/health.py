"""WSGI and ASGI callables serving a registry's health() as JSON.

The seed's ``/health/circuits`` endpoint becomes one line in any framework, e.g.
``app.mount("/health/circuits", breakers.health.asgi_app)``. The status is 200 even
when circuits are open by default: an open breaker means the process is protecting
itself, and pulling it out of a load balancer would spread the outage. Pass
``unhealthy_status=503`` to make open circuits visible to probes that read status only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any

from .registry import CircuitBreakerRegistry, default_registry

__all__ = ["asgi_app", "make_asgi_app", "make_wsgi_app", "wsgi_app"]

_ALLOWED = ("GET", "HEAD")

WSGIStartResponse = Callable[[str, list[tuple[str, str]]], object]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], ASGIReceive, ASGISend], Awaitable[None]]


def _check_status(unhealthy_status: int) -> None:
    if isinstance(unhealthy_status, bool) or unhealthy_status not in (200, 503):
        raise ValueError(f"unhealthy_status must be 200 or 503, got {unhealthy_status!r}")


def _respond(
    registry: CircuitBreakerRegistry, method: str, unhealthy_status: int
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for one request."""
    if method not in _ALLOWED:
        status = 405
        body = json.dumps({"error": "method_not_allowed", "allowed": list(_ALLOWED)})
        extra = [("Allow", ", ".join(_ALLOWED))]
    else:
        health = registry.health()
        status = 200 if health["healthy"] else unhealthy_status
        body = json.dumps(health)
        extra = []
    payload = body.encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    return status, headers, b"" if method == "HEAD" else payload


def make_wsgi_app(
    registry: CircuitBreakerRegistry | None = None, *, unhealthy_status: int = 200
) -> Callable[[dict[str, Any], WSGIStartResponse], Iterable[bytes]]:
    """A WSGI application answering GET/HEAD with `registry.health()` as JSON."""
    _check_status(unhealthy_status)

    def app(environ: dict[str, Any], start_response: WSGIStartResponse) -> Iterable[bytes]:
        target = registry if registry is not None else default_registry
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        status, headers, body = _respond(target, method, unhealthy_status)
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    return app


def make_asgi_app(
    registry: CircuitBreakerRegistry | None = None, *, unhealthy_status: int = 200
) -> ASGIApp:
    """An ASGI application answering GET/HEAD with `registry.health()` as JSON."""
    _check_status(unhealthy_status)

    async def app(scope: MutableMapping[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            # Served on its own, the app must complete the lifespan handshake.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")
        target = registry if registry is not None else default_registry
        method = str(scope.get("method", "GET")).upper()
        status, headers, body = _respond(target, method, unhealthy_status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


#: WSGI health app over the default registry.
wsgi_app = make_wsgi_app()
#: ASGI health app over the default registry.
asgi_app = make_asgi_app()

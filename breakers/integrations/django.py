"""Django middleware: ``/health/circuits`` and the agent started with the application.

Add it to ``MIDDLEWARE`` (first, so the health answer skips the rest)::

    MIDDLEWARE = ["breakers.integrations.django.SwitchyardMiddleware", ...]

    SWITCHYARD = {  # optional: each key falls back to its environment variable
        "URL": "https://switchyard.internal",  # SWITCHYARD_URL; unset: no agent
        "TOKEN": "sya_...",                    # SWITCHYARD_TOKEN
        "SERVICE": "checkout",                 # SWITCHYARD_SERVICE
        "HEALTH_PATH": "/health/circuits",     # None: no health endpoint
        "UNHEALTHY_STATUS": 200,               # or 503 while circuits are open
    }

The agent starts with the first request of each process (after a fork too, so a
pre-forking server such as gunicorn with ``--preload`` runs one agent per worker) and
flushes at interpreter exit. The middleware is sync and async capable. Under ASGI,
``breakers.integrations.asgi.SwitchyardMiddleware`` around the application starts it
at the server's lifespan startup instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from ..agent import Agent
from ..health import _check_status
from ..registry import CircuitBreakerRegistry, default_registry
from .asgi import AgentLifecycle

__all__ = ["SwitchyardMiddleware", "agent_settings"]

_KEYS = ("URL", "TOKEN", "SERVICE")


def agent_settings(conf: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """SWITCHYARD_URL/TOKEN/SERVICE: the ``SWITCHYARD`` setting's values, else the
    environment's."""
    values = {}
    for key in _KEYS:
        value = conf.get(key)
        if value is None:
            value = environ.get(f"SWITCHYARD_{key}", "")
        if not isinstance(value, str):
            raise ValueError(f"SWITCHYARD[{key!r}] must be a string, got {value!r}")
        values[f"SWITCHYARD_{key}"] = value.strip()
    return values


def _lifecycle(conf: Mapping[str, Any], registry: CircuitBreakerRegistry) -> AgentLifecycle:
    values = agent_settings(conf, os.environ)
    if not values["SWITCHYARD_URL"]:
        return AgentLifecycle(None)
    agent = Agent.from_env(registry=registry, environ={**os.environ, **values})
    return AgentLifecycle(agent)


class SwitchyardMiddleware:
    """Answers the health path, starts the agent; passes everything else on."""

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
    ) -> None:
        conf: Mapping[str, Any] = getattr(settings, "SWITCHYARD", None) or {}
        if not isinstance(conf, Mapping):
            raise ValueError(f"SWITCHYARD must be a dict, got {conf!r}")
        self.get_response = get_response
        self.health_path = conf.get("HEALTH_PATH", "/health/circuits")
        if self.health_path is not None and not (
            isinstance(self.health_path, str) and self.health_path.startswith("/")
        ):
            raise ValueError(
                f"SWITCHYARD['HEALTH_PATH'] must start with '/', got {self.health_path!r}"
            )
        self.unhealthy_status = conf.get("UNHEALTHY_STATUS", 200)
        _check_status(self.unhealthy_status)
        self.registry = default_registry
        self.lifecycle = _lifecycle(conf, self.registry)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def _health(self, request: HttpRequest) -> HttpResponse | None:
        if request.path != self.health_path:
            return None
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse(
                json.dumps({"error": "method_not_allowed", "allowed": ["GET", "HEAD"]}),
                status=405,
                content_type="application/json",
            )
            response["Allow"] = "GET, HEAD"
            return response
        health = self.registry.health()
        response = HttpResponse(
            json.dumps(health),
            status=200 if health["healthy"] else self.unhealthy_status,
            content_type="application/json",
        )
        response["Cache-Control"] = "no-store"
        return response

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        self.lifecycle.start()
        return self._health(request) or self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        await sync_to_async(self.lifecycle.start, thread_sensitive=False)()
        answer = self._health(request)
        if answer is not None:
            return answer
        response = self.get_response(request)
        return await response  # type: ignore[no-any-return,misc]

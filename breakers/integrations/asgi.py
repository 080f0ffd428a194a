"""ASGI middleware: ``/health/circuits`` and the agent started and stopped with the
application (standard library only; any ASGI framework: Starlette, FastAPI, Litestar,
Quart, Django's ASGI handler)::

    from breakers.integrations.asgi import SwitchyardMiddleware

    app = SwitchyardMiddleware(app)  # SWITCHYARD_URL / _TOKEN / _SERVICE from the environment

- ``GET``/``HEAD`` on ``health_path`` answer the registry's health summary as JSON
  (``breakers.health``: 200, or ``unhealthy_status`` while circuits are open).
- The agent starts at the server's lifespan startup and stops (flushing what it holds)
  at shutdown. An application that does not speak the lifespan protocol (Django's
  ASGI handler raises on it) gets the handshake from the middleware. Under a server
  that sends no lifespan at all, the agent starts with the first request.
- ``agent="env"`` (default) builds it from SWITCHYARD_URL, SWITCHYARD_TOKEN and
  SWITCHYARD_SERVICE and runs without one when SWITCHYARD_URL is unset; pass an
  ``Agent`` to use your own, or ``None`` for no agent.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import MutableMapping
from typing import Any, Literal

from ..agent import Agent, start_from_env
from ..health import ASGIApp, ASGIReceive, ASGISend, make_asgi_app
from ..registry import CircuitBreakerRegistry

__all__ = ["AgentLifecycle", "SwitchyardMiddleware"]

Scope = MutableMapping[str, Any]


class AgentLifecycle:
    """Starts an agent once per process (again in a forked child) and stops it."""

    def __init__(
        self,
        agent: Agent | Literal["env"] | None = "env",
        registry: CircuitBreakerRegistry | None = None,
    ) -> None:
        if agent is not None and agent != "env" and not isinstance(agent, Agent):
            raise ValueError(f"agent must be an Agent, 'env' or None, got {agent!r}")
        self._spec = agent
        self._registry = registry
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.agent: Agent | None = None

    def start(self) -> Agent | None:
        """Start the agent in this process unless it runs already; returns it."""
        if self._pid == os.getpid():
            return self.agent
        with self._lock:
            if self._pid == os.getpid():
                return self.agent
            if isinstance(self._spec, Agent):
                self.agent = self._spec.start()
            elif self._spec == "env":
                self.agent = start_from_env(registry=self._registry, required=False)
            self._pid = os.getpid()
            return self.agent

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the agent (a last flush within ``timeout`` seconds)."""
        with self._lock:
            if self.agent is not None and self._pid == os.getpid():
                self.agent.stop(timeout=timeout)
            self._pid = None


class SwitchyardMiddleware:
    """Wraps an ASGI application (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        health_path: str | None = "/health/circuits",
        registry: CircuitBreakerRegistry | None = None,
        agent: Agent | Literal["env"] | None = "env",
        unhealthy_status: int = 200,
    ) -> None:
        if health_path is not None and not (
            isinstance(health_path, str) and health_path.startswith("/")
        ):
            raise ValueError(f"health_path must start with '/', got {health_path!r}")
        self.app = app
        self.health_path = health_path
        self.health = make_asgi_app(registry, unhealthy_status=unhealthy_status)
        self.lifecycle = AgentLifecycle(agent, registry)

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.lifecycle._pid != os.getpid():
            await asyncio.to_thread(self.lifecycle.start)  # a server without lifespan
        if kind == "http" and scope.get("path") == self.health_path:
            await self.health(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        heard = False

        async def observed() -> MutableMapping[str, Any]:
            nonlocal heard
            message = await receive()
            heard = True
            if message["type"] == "lifespan.startup":
                await asyncio.to_thread(self.lifecycle.start)
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.lifecycle.stop)
            return message

        try:
            await self.app(scope, observed, send)
        except Exception:
            if heard:
                raise
            # The application does not speak lifespan: the middleware answers it.
            await self.health(scope, observed, send)

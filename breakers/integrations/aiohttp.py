"""An aiohttp client middleware that guards every request with a breaker (``pip install
"switchyard-breakers[aiohttp]"``, aiohttp 3.12 or newer)::

    import aiohttp
    from breakers.integrations.aiohttp import BreakerMiddleware

    async with aiohttp.ClientSession(middlewares=(BreakerMiddleware(),)) as session:
        async with session.get("http://inventory.internal:8080/stock/42") as response:
            ...  # breaker "inventory.internal:8080"

A 5xx answer and any exception of the client (``aiohttp.ClientError``, including
``ServerTimeoutError`` from a ``sock_read``/``sock_connect`` timeout) count as
failures; the 5xx response is still returned. While the breaker rejects calls, the
request raises ``breakers.CircuitOpenError`` without contacting the server. Which
breaker guards a request and which statuses fail: ``breakers.integrations.http.Guard``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping

try:
    import aiohttp
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        'breakers.integrations.aiohttp needs aiohttp: pip install "switchyard-breakers[aiohttp]"'
    ) from exc

from ..config import CircuitBreakerConfig
from ..registry import CircuitBreakerRegistry
from .http import DEFAULT_FAILURE_STATUSES, Guard

__all__ = ["BreakerMiddleware"]

Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]


def _status(response: aiohttp.ClientResponse) -> int:
    return response.status


class BreakerMiddleware:
    """A client middleware for ``aiohttp.ClientSession(middlewares=...)``."""

    def __init__(
        self,
        *,
        registry: CircuitBreakerRegistry | None = None,
        config: CircuitBreakerConfig | None = None,
        routes: Mapping[str, str] | None = None,
        name_for: Callable[[str, int | None, str], str | None] | None = None,
        failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES,
    ) -> None:
        self.guard = Guard(registry, config, routes, name_for, failure_statuses)

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        url = request.url
        return await self.guard.call_async(
            (url.host or "", url.explicit_port, url.path), lambda: handler(request), _status
        )

"""httpx transports that guard every request with a breaker (``pip install
"switchyard-breakers[httpx]"``)::

    import httpx
    from breakers.integrations.httpx import BreakerTransport

    client = httpx.Client(transport=BreakerTransport())
    client.get("https://payments.internal/charge")  # breaker "payments.internal"

``AsyncBreakerTransport`` does the same for ``httpx.AsyncClient``. A 5xx answer and
any transport error (timeouts, refused connections) count as failures; the 5xx
response is still returned. While the breaker rejects calls, the request raises
``breakers.CircuitOpenError`` (httpx passes it through unchanged), or returns
``fallback(request, error)`` when a fallback is given. Which breaker guards a request
and which statuses fail: ``breakers.integrations.http.Guard``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping

try:
    import httpx
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        'breakers.integrations.httpx needs httpx: pip install "switchyard-breakers[httpx]"'
    ) from exc

from ..config import CircuitBreakerConfig
from ..errors import CircuitOpenError
from ..registry import CircuitBreakerRegistry
from .http import DEFAULT_FAILURE_STATUSES, Guard

__all__ = ["AsyncBreakerTransport", "BreakerTransport"]


def _target(request: httpx.Request) -> tuple[str, int | None, str]:
    url = request.url
    return url.host, url.port, url.path


def _status(response: httpx.Response) -> int:
    return response.status_code


class BreakerTransport(httpx.BaseTransport):
    """Wraps another transport (default ``httpx.HTTPTransport()``)."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        registry: CircuitBreakerRegistry | None = None,
        config: CircuitBreakerConfig | None = None,
        routes: Mapping[str, str] | None = None,
        name_for: Callable[[str, int | None, str], str | None] | None = None,
        failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES,
        fallback: Callable[[httpx.Request, CircuitOpenError], httpx.Response] | None = None,
    ) -> None:
        self._transport = transport if transport is not None else httpx.HTTPTransport()
        self.guard = Guard(registry, config, routes, name_for, failure_statuses)
        self._fallback = fallback

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.guard.call(
                _target(request), lambda: self._transport.handle_request(request), _status
            )
        except CircuitOpenError as error:
            if self._fallback is None:
                raise
            return self._fallback(request, error)

    def close(self) -> None:
        self._transport.close()


class AsyncBreakerTransport(httpx.AsyncBaseTransport):
    """Wraps another async transport (default ``httpx.AsyncHTTPTransport()``)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        registry: CircuitBreakerRegistry | None = None,
        config: CircuitBreakerConfig | None = None,
        routes: Mapping[str, str] | None = None,
        name_for: Callable[[str, int | None, str], str | None] | None = None,
        failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES,
        fallback: Callable[[httpx.Request, CircuitOpenError], Awaitable[httpx.Response]]
        | None = None,
    ) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self.guard = Guard(registry, config, routes, name_for, failure_statuses)
        self._fallback = fallback

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.guard.call_async(
                _target(request), lambda: self._transport.handle_async_request(request), _status
            )
        except CircuitOpenError as error:
            if self._fallback is None:
                raise
            return await self._fallback(request, error)

    async def aclose(self) -> None:
        await self._transport.aclose()

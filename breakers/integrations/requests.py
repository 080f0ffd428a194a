"""A requests adapter that guards every request with a breaker (``pip install
"switchyard-breakers[requests]"``)::

    import requests
    from breakers.integrations.requests import BreakerAdapter

    session = requests.Session()
    adapter = BreakerAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.get("https://payments.internal/charge")  # breaker "payments.internal"

A 5xx answer and any exception of the adapter (timeouts, refused connections) count
as failures; the 5xx response is still returned. While the breaker rejects calls, the
request raises ``breakers.CircuitOpenError``, or returns ``fallback(request, error)``
when a fallback is given. Which breaker guards a request and which statuses fail:
``breakers.integrations.http.Guard``. Keyword arguments other than those below go to
``requests.adapters.HTTPAdapter`` (``pool_maxsize``, ``max_retries``...).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

try:
    from requests import PreparedRequest, Response
    from requests.adapters import HTTPAdapter
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        'breakers.integrations.requests needs requests: pip install "switchyard-breakers[requests]"'
    ) from exc

from ..config import CircuitBreakerConfig
from ..errors import CircuitOpenError
from ..registry import CircuitBreakerRegistry, default_registry
from .http import DEFAULT_FAILURE_STATUSES, FailedResponse, Guard

__all__ = ["BreakerAdapter"]


class BreakerAdapter(HTTPAdapter):
    """An HTTPAdapter whose ``send`` goes through the request's breaker."""

    def __init__(
        self,
        *,
        registry: CircuitBreakerRegistry | None = None,
        config: CircuitBreakerConfig | None = None,
        routes: Mapping[str, str] | None = None,
        name_for: Callable[[str, int | None, str], str | None] | None = None,
        failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES,
        fallback: Callable[[PreparedRequest, CircuitOpenError], Response] | None = None,
        **adapter: Any,
    ) -> None:
        super().__init__(**adapter)
        self.guard = Guard(
            default_registry if registry is None else registry,
            config,
            routes or {},
            name_for,
            failure_statuses,
        )
        self._fallback = fallback

    def _send(self, request: PreparedRequest, kwargs: dict[str, Any]) -> Response:
        response = super().send(request, **kwargs)
        if self.guard.failed(response.status_code):
            raise FailedResponse(response)
        return response

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        breaker = self.guard.breaker(parts.hostname or "", parts.port, parts.path or "/")
        if breaker is None:
            return super().send(request, **kwargs)
        try:
            return breaker.call(self._send, None, request, kwargs)
        except FailedResponse as failed:
            response: Response = failed.response  # type: ignore[assignment]
            return response
        except CircuitOpenError as error:
            if self._fallback is None:
                raise
            return self._fallback(request, error)

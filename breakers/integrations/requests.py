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
from ..registry import CircuitBreakerRegistry
from .http import DEFAULT_FAILURE_STATUSES, Guard

__all__ = ["BreakerAdapter"]


def _status(response: Response) -> int:
    return response.status_code


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
        self.guard = Guard(registry, config, routes, name_for, failure_statuses)
        self._fallback = fallback

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        target = (parts.hostname or "", parts.port, parts.path or "/")
        try:
            return self.guard.call(
                target, lambda: super(BreakerAdapter, self).send(request, **kwargs), _status
            )
        except CircuitOpenError as error:
            if self._fallback is None:
                raise
            return self._fallback(request, error)

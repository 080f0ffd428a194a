"""What the HTTP integrations share: which breaker guards a request, and which answers
count as failures. Standard library only.

By default a request is guarded by the breaker named after its host (with the port
when the URL names one: ``api.example.com``, ``127.0.0.1:8080``), created in the
registry on first use. Route rules map ``host`` or ``host/path-prefix`` to a breaker
name; the longest matching rule wins. A 5xx answer counts as a failure (the response
is still returned to the caller); so does any exception of the client (timeouts,
connection errors). A 4xx is the caller's problem, not the dependency's, and counts as
a success. ``failure_statuses`` changes the set.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ..breaker import CircuitBreaker
from ..config import CircuitBreakerConfig
from ..registry import CircuitBreakerRegistry, default_registry

__all__ = ["DEFAULT_FAILURE_STATUSES", "FailedResponse", "Guard", "breaker_name"]

R = TypeVar("R")

#: Answers that count as failures of the dependency by default: every 5xx.
DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset(range(500, 600))

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_.:/@+\-]")
_NAME_MAX = 200


def breaker_name(host: str, port: int | None) -> str:
    """The default breaker name of a host (and an explicit port): the characters the
    control plane accepts in a circuit name, at most 200, starting with a letter, digit
    or underscore (an IPv6 address gets a leading underscore)."""
    host = host.strip("[]").lower()
    name = host if port is None else f"{host}:{port}"
    name = _NOT_ALLOWED.sub("_", name)
    if not name or not (name[0].isalnum() or name[0] == "_"):
        name = "_" + name
    return name[:_NAME_MAX]


class FailedResponse(Exception):
    """Raised inside a guarded call so that the breaker counts an answer as a failure;
    the integration catches it and returns the response to the caller."""

    def __init__(self, response: object) -> None:
        super().__init__("the answer counts as a failure")
        self.response = response


@dataclass
class Guard:
    """Picks the breaker of a request and judges its answer.

    ``routes`` maps ``host`` or ``host/path-prefix`` (no scheme; ``host:port`` when the
    URL names a port) to a breaker name; ``name_for(host, port, path)`` replaces the
    default naming entirely (return None to leave a request unguarded). Breakers are
    created in ``registry`` (None: the default one, which the agent reports) with
    ``config``. :meth:`call` and :meth:`call_async` run a request through its breaker.
    """

    registry: CircuitBreakerRegistry | None = None
    config: CircuitBreakerConfig | None = None
    routes: Mapping[str, str] | None = None
    name_for: Callable[[str, int | None, str], str | None] | None = None
    failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES

    def __post_init__(self) -> None:
        self._registry = default_registry if self.registry is None else self.registry
        routes = self.routes or {}
        for rule, name in routes.items():
            if not isinstance(rule, str) or not rule or "://" in rule:
                raise ValueError(f"routes: a rule is 'host' or 'host/path', got {rule!r}")
            if not isinstance(name, str) or not name:
                raise ValueError(f"routes: the breaker name of {rule!r} must be a string")
        # Longest first: the most specific rule wins.
        self._rules = sorted(
            ((rule.lower().rstrip("/"), name) for rule, name in routes.items()),
            key=lambda item: -len(item[0]),
        )
        statuses = frozenset(self.failure_statuses)
        if any(not isinstance(s, int) or not 100 <= s <= 599 for s in statuses):
            raise ValueError("failure_statuses must be HTTP status codes (100-599)")
        self._statuses = statuses
        self._cache: dict[tuple[str, int | None], CircuitBreaker | None] = {}

    def breaker(self, host: str, port: int | None, path: str) -> CircuitBreaker | None:
        """The breaker guarding a request to ``host``/``port``/``path``, or None."""
        if not self._rules and self.name_for is None:
            # The common case, one dictionary lookup: a breaker per host.
            key = (host, port)
            found = self._cache.get(key)
            if found is None:
                found = self._cache[key] = self._registry.get_or_create(
                    breaker_name(host, port), self.config
                )
            return found
        if self.name_for is not None:
            name = self.name_for(host, port, path)
        else:
            name = self._route(host, port, path)
        return None if name is None else self._registry.get_or_create(name, self.config)

    def _route(self, host: str, port: int | None, path: str) -> str:
        authority = host.lower() if port is None else f"{host.lower()}:{port}"
        target = authority + (path if path.startswith("/") else "/" + path)
        for rule, name in self._rules:
            if target == rule or target.startswith(rule + "/"):
                return name
        return breaker_name(host, port)

    def failed(self, status: int) -> bool:
        """Whether an answer with this status counts as a failure of the dependency."""
        return status in self._statuses

    def call(
        self,
        target: tuple[str, int | None, str],
        send: Callable[[], R],
        status: Callable[[R], int],
    ) -> R:
        """``send()`` a request to ``target`` (host, port, path) through its breaker: an
        answer whose ``status()`` fails is counted as a failure and returned; an
        exception counts as a failure and is raised; ``CircuitOpenError`` while the
        breaker rejects (``send`` is not called)."""
        breaker = self.breaker(*target)
        if breaker is None:
            return send()
        statuses = self._statuses

        def checked() -> R:
            response = send()
            if status(response) in statuses:
                raise FailedResponse(response)
            return response

        try:
            return breaker.call(checked)
        except FailedResponse as failed:
            return cast(R, failed.response)

    async def call_async(
        self,
        target: tuple[str, int | None, str],
        send: Callable[[], Awaitable[R]],
        status: Callable[[R], int],
    ) -> R:
        """:meth:`call` for an awaitable ``send()``."""
        breaker = self.breaker(*target)
        if breaker is None:
            return await send()
        statuses = self._statuses

        async def checked() -> R:
            response = await send()
            if status(response) in statuses:
                raise FailedResponse(response)
            return response

        try:
            result: Any = await breaker.call_async(checked)
            return cast(R, result)
        except FailedResponse as failed:
            return cast(R, failed.response)

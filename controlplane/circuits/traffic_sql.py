"""The SQL function the traffic tables need, on SQLite.

PostgreSQL has ``switchyard_latency_add(jsonb, jsonb)`` and the aggregate
``switchyard_latency_sum(jsonb)`` from migration 0005. SQLite (the embedded mode of
``make run``) gets the same names as Python functions on every new connection, so the
same statements run on both.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.backends.signals import connection_created


def latency_add(a: str | None, b: str | None) -> str:
    """Two sparse histograms (JSON objects ``{"<bucket index>": count}``) added bucket by
    bucket."""
    total: dict[str, int] = dict(json.loads(a)) if a else {}
    for key, count in (json.loads(b) if b else {}).items():
        total[key] = total.get(key, 0) + int(count)
    return json.dumps(total, separators=(",", ":"))


class LatencySum:
    """The aggregate ``switchyard_latency_sum(latency)``."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}

    def step(self, value: str | None) -> None:
        for key, count in (json.loads(value) if value else {}).items():
            self.total[key] = self.total.get(key, 0) + int(count)

    def finalize(self) -> str:
        return json.dumps(self.total, separators=(",", ":"))


def register_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the functions on each new SQLite connection."""
    if connection.vendor != "sqlite":
        return
    raw = connection.connection
    raw.create_function("switchyard_latency_add", 2, latency_add, deterministic=True)
    raw.create_aggregate("switchyard_latency_sum", 1, LatencySum)


connection_created.connect(register_sqlite_functions, dispatch_uid="switchyard-traffic-sql")

"""The traffic tables' SQL functions on SQLite.

PostgreSQL has ``switchyard_latency_add(jsonb, jsonb)`` and the aggregate
``switchyard_latency_sum(jsonb)`` from migration 0005. On SQLite (``make run``) the same
names are registered on every new connection, taking and giving the JSON text of sparse
latency histograms (``{"<bucket index>": count}``), so the same statements run on both.
"""

import json
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

Histogram = dict[str, int]


def merge(total: Histogram, text: str | bytes | None) -> Histogram:
    """Add the histogram ``text`` (JSON) into ``total`` bucket by bucket; ``total``."""
    if text:
        for index, count in json.loads(text).items():
            total[index] = total.get(index, 0) + int(count)
    return total


def dumps(histogram: Histogram) -> str:
    """JSON text of a histogram, its buckets in numeric order."""
    ordered = dict(sorted(histogram.items(), key=lambda item: int(item[0])))
    return json.dumps(ordered, separators=(",", ":"))


def latency_add(a: str | bytes | None, b: str | bytes | None) -> str:
    """``switchyard_latency_add(a, b)``: the two histograms added."""
    return dumps(merge(merge({}, a), b))


class LatencySum:
    """``switchyard_latency_sum(latency)``: every histogram of the group added."""

    def __init__(self) -> None:
        self.total: Histogram = {}

    def step(self, value: str | bytes | None) -> None:
        merge(self.total, value)

    def finalize(self) -> str:
        return dumps(self.total)


def register_sqlite_functions(connection: BaseDatabaseWrapper) -> None:
    """Register the functions on a SQLite connection (a Django connection wrapper)."""
    raw = connection.connection
    raw.create_function("switchyard_latency_add", 2, latency_add, deterministic=True)
    raw.create_aggregate("switchyard_latency_sum", 1, LatencySum)


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: registers the functions on SQLite connections."""
    if connection.vendor == "sqlite":
        register_sqlite_functions(connection)

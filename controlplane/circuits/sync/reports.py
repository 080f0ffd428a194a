"""Telemetry reports (docs/traffic.md): which are new, and what they add to the traffic.

Each process numbers its reports 1, 2, 3, ... per start and sends the ones not yet
acknowledged with every sync, so one report may arrive several times, through several
web processes, and out of order (a sync answered before it is written, the next one
written first). :class:`Watermark` stores each exactly once: every seq up to
``through`` is stored, and bit ``k`` of ``seen`` says whether seq ``through + 1 + k``
is. A seq more than :data:`WINDOW` past ``through`` moves the window on: the agent keeps
fewer reports than that (``SWITCHYARD_SYNC_MAX_REPORTS``), so the seqs left behind are
ones it discarded and will never send.

:func:`add_up` sums the new reports per circuit and bucket, so a write of many syncs
touches each traffic row once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controlplane.circuits.sync.wire import Report

#: Seqs past ``through`` a watermark remembers (the bits of a signed 64-bit column).
WINDOW = 63


@dataclass(slots=True)
class Watermark:
    """The reports stored of one process start."""

    through: int = 0
    seen: int = 0

    def take(self, seq: int) -> bool:
        """Record ``seq``; False if it was stored before (or left behind)."""
        offset = seq - self.through - 1
        if offset < 0:
            return False
        if offset >= WINDOW:
            shift = offset - WINDOW + 1
            self.seen >>= shift
            self.through += shift
            offset = WINDOW - 1
        bit = 1 << offset
        if self.seen & bit:
            return False
        self.seen |= bit
        while self.seen & 1:
            self.seen >>= 1
            self.through += 1
        return True


# (circuit id, bucket start) -> [six counters..., {latency bucket: count}]
Traffic = dict[tuple[int, datetime], list[Any]]


def add_up(traffic: Traffic, report: Report, circuits: Mapping[str, int]) -> None:
    """Add ``report`` to ``traffic`` (``circuits``: the service's ids by name)."""
    bucket = datetime.fromtimestamp(report.bucket, tz=UTC)
    for growth in report.breakers:
        key = (circuits[growth.name], bucket)
        row = traffic.get(key)
        if row is None:
            row = traffic[key] = [0, 0, 0, 0, 0, 0, {}]
        row[0] += growth.calls
        row[1] += growth.successes
        row[2] += growth.failures
        row[3] += growth.slow_calls
        row[4] += growth.rejected
        row[5] += growth.fallbacks
        latency: dict[str, int] = row[6]
        for index, count in growth.latency:
            if count:
                name = str(index)
                latency[name] = latency.get(name, 0) + count


def rows(traffic: Traffic) -> Iterable[tuple[Any, ...]]:
    """The traffic rows to upsert, in one lock order (circuit, bucket)."""
    for (circuit_id, bucket), values in sorted(traffic.items()):
        yield (circuit_id, bucket, *values)


__all__ = ["WINDOW", "Traffic", "Watermark", "add_up", "rows"]

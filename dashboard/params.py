"""Ids, names, states and time windows in query strings, parsed strictly.

``str.isdigit`` and ``int`` take more than ASCII digits (superscripts such as ``²`` pass
``isdigit`` and fail ``int``; ``int`` also takes other scripts' digits, signs, spaces and
underscores), and a number past PostgreSQL's ``bigint`` fails in the database. An id
here is 1 to 19 ASCII digits no greater than the largest ``bigint``, and a list of them
is comma-separated, bounded in length, with no empty item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.dateparse import parse_datetime

from controlplane.circuits.choices import NAME_MAX_LENGTH, NAME_RE, CircuitState

# The largest id (PostgreSQL bigint, the primary keys' type).
MAX_ID = 2**63 - 1
# The most ids one request may name (the circuit page's resync sends those it shows).
MAX_IDS = 1000
_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
_SHOWN = 20  # characters of a bad item quoted back


class ParamError(ValueError):
    """A query parameter that does not parse: ``field`` and ``reason`` for the answer."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _item(raw: str) -> int | None:
    if not _ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


def _quoted(raw: str) -> str:
    return repr(raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "...")


def parse_id(raw: str, field: str) -> int:
    """One id (``ParamError`` naming ``field`` if it is not one)."""
    value = _item(raw)
    if value is None:
        raise ParamError(
            field, f"must be an id (ASCII digits, at most {MAX_ID}), got {_quoted(raw)}"
        )
    return value


def parse_ids(raw: str, field: str = "ids", limit: int = MAX_IDS) -> list[int]:
    """Comma-separated ids, in order, duplicates dropped (``ParamError`` naming ``field``:
    none, more than ``limit``, an empty item or one that is not an id)."""
    if raw == "":
        raise ParamError(field, "must name at least one id")
    count = raw.count(",") + 1
    if count > limit:
        raise ParamError(field, f"at most {limit} ids, got {count}")
    ids: dict[int, None] = {}
    for index, item in enumerate(raw.split(",")):
        if item == "":
            raise ParamError(field, f"item {index} is empty")
        value = _item(item)
        if value is None:
            raise ParamError(
                field,
                f"item {index} must be an id (ASCII digits, at most {MAX_ID}), got {_quoted(item)}",
            )
        ids[value] = None
    return list(ids)


def parse_name(raw: str, field: str) -> str:
    """A service, circuit or instance name as the sync accepts it (``ParamError`` naming
    ``field`` otherwise)."""
    if len(raw) > NAME_MAX_LENGTH or not NAME_RE.match(raw):
        raise ParamError(
            field,
            f"must be a name (1-{NAME_MAX_LENGTH} letters, digits or _ . : / @ + -), "
            f"got {_quoted(raw)}",
        )
    return raw


def parse_states(raws: list[str], field: str = "state") -> tuple[str, ...]:
    """Breaker states (each a ``CircuitState`` value), in order, duplicates dropped."""
    states: dict[str, None] = {}
    for raw in raws:
        if raw not in CircuitState.values:
            raise ParamError(
                field, f"must be one of {', '.join(CircuitState.values)}, got {_quoted(raw)}"
            )
        states[raw] = None
    return tuple(states)


def parse_moment(raw: str, field: str) -> datetime:
    """An ISO 8601 time with its zone (``2026-12-05T04:45:00Z``, ``...+01:00``)."""
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ParamError(field, f"must be an ISO 8601 time with a zone, got {raw[:40]!r}")
    return moment


@dataclass(frozen=True)
class Window:
    """A fixed time window: ``end`` None runs up to now (and stays live)."""

    start: datetime
    end: datetime | None

    def shown_end(self, now: datetime) -> datetime:
        return self.end or now


def parse_window(raw_from: str, raw_to: str, now: datetime, max_span: timedelta) -> Window | None:
    """``?from=&to=`` (what links to a moment carry): None without ``from``; a
    ``ParamError`` for a time that does not parse, ``from`` not before ``to`` (or now,
    without ``to``), or a window longer than ``max_span``."""
    raw_from, raw_to = raw_from.strip(), raw_to.strip()
    if not raw_from:
        return None
    start = parse_moment(raw_from, "from")
    end = parse_moment(raw_to, "to") if raw_to else None
    shown_end = end or now
    if start >= shown_end:
        raise ParamError("from", "must be before to (or before now, without to)")
    if shown_end - start > max_span:
        raise ParamError("from", f"the window must be at most {max_span.days} days")
    return Window(start, end)

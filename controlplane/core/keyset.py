"""Keyset pagination of history (transitions, audit events), newest first.

A page is the rows before (older than) or after (newer than) a position ``(at, id)``,
compared as a row value: ``WHERE (at, id) < (a, i) ORDER BY at DESC, id DESC LIMIT n``.
No OFFSET and no COUNT, so a page costs the same at row 10 and at row 10 million, and
the pair is unique (``id`` is), so rows sharing a time are neither skipped nor repeated.
A row stored after a page was read appears on a later page only if it sorts past the
position where the reader is; the rows already there are each seen once.

A position reads ``<ISO 8601 time in UTC>,<id>`` (``2026-11-27T10:04:00.123456Z,8812``),
so a client may also start from any row it holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from django.db.models import F, Model, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan

# The largest id (PostgreSQL bigint, the primary keys' type).
MAX_ID = 2**63 - 1
# Characters of a bad value quoted back in an error.
_SHOWN = 40
_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
# A date, a time, an optional fraction and an explicit offset (Z or +HH:MM).
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
# The query parameters of a page: rows older than, rows newer than.
BEFORE = "before"
AFTER = "after"

M = TypeVar("M", bound=Model)
R = TypeVar("R")


class KeysetError(ValueError):
    """A position that does not parse: ``field`` and ``reason`` for the answer."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Position:
    """A row's place in the order: its time and id."""

    at: datetime
    id: int

    def __str__(self) -> str:
        return f"{iso_utc(self.at)},{self.id}"

    @classmethod
    def of(cls, row: Any) -> Position:
        """The position of a model row (``at`` and ``pk``)."""
        return cls(row.at, row.pk)


def iso_utc(value: datetime) -> str:
    """``value`` in UTC as ISO 8601 with ``Z`` (the API's way of writing a time)."""
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _quoted(raw: str) -> str:
    return repr(raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "...")


def parse_position(raw: str, field: str) -> Position:
    """``<time>,<id>`` as a :class:`Position` (``KeysetError`` naming ``field``)."""
    shape = "must be '<ISO 8601 time with offset>,<id>' as given in a page's links"
    at_text, comma, id_text = raw.rpartition(",")
    if not comma or not _TIME.fullmatch(at_text) or not _ID.fullmatch(id_text):
        raise KeysetError(field, f"{shape}, got {_quoted(raw)}")
    try:
        at = datetime.fromisoformat(at_text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise KeysetError(field, f"not a valid time: {_quoted(at_text)}") from None
    row_id = int(id_text)
    if row_id > MAX_ID:
        raise KeysetError(field, f"the id must be at most {MAX_ID}, got {_quoted(id_text)}")
    return Position(at, row_id)


def parse_cursor(params: Any) -> tuple[Position | None, Position | None]:
    """``(before, after)`` from query parameters; at most one of them may be given."""
    raw_before, raw_after = params.get(BEFORE), params.get(AFTER)
    if raw_before is not None and raw_after is not None:
        raise KeysetError(AFTER, f"give either {BEFORE} or {AFTER}, not both")
    before = parse_position(raw_before, BEFORE) if raw_before is not None else None
    after = parse_position(raw_after, AFTER) if raw_after is not None else None
    return before, after


def parse_page_size(raw: str | None, default: int, maximum: int, field: str = "page_size") -> int:
    """A page size from 1 to ``maximum`` (``default`` when absent)."""
    if raw is None:
        return default
    if not _ID.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise KeysetError(field, f"must be an integer from 1 to {maximum}, got {_quoted(raw)}")
    return int(raw)


@dataclass(frozen=True)
class Page(Generic[R]):
    """Rows newest first, with the cursor of the older and the newer page.

    ``older`` / ``newer`` are ``{"before": ...}`` / ``{"after": ...}`` query parameters,
    ``{}`` for the first page, or None when there is no such page.
    """

    rows: Sequence[R]
    older: dict[str, str] | None
    newer: dict[str, str] | None


def older_than(queryset: QuerySet[M], position: Position) -> QuerySet[M]:
    """Rows with ``(at, id) < position``, as one row-value comparison."""
    return queryset.filter(TupleLessThan(Tuple(F("at"), F("id")), (position.at, position.id)))


def newer_than(queryset: QuerySet[M], position: Position) -> QuerySet[M]:
    """Rows with ``(at, id) > position``, as one row-value comparison."""
    return queryset.filter(TupleGreaterThan(Tuple(F("at"), F("id")), (position.at, position.id)))


def page(
    queryset: QuerySet[M],
    *,
    before: Position | None = None,
    after: Position | None = None,
    size: int,
) -> Page[M]:
    """One page of ``queryset`` (rows with ``at`` and ``id``), newest first: ``size`` rows
    older than ``before``, or newer than ``after``, or the newest ones. One query, of
    ``size + 1`` rows (the extra one says whether there is a page beyond)."""
    if after is not None:
        found = list(newer_than(queryset, after).order_by("at", "id")[: size + 1])
        beyond = len(found) > size
        rows = found[:size][::-1]
        return Page(
            rows,
            {BEFORE: str(Position.of(rows[-1]))} if rows else {},
            {AFTER: str(Position.of(rows[0]))} if beyond else None,
        )
    scoped = older_than(queryset, before) if before is not None else queryset
    found = list(scoped.order_by("-at", "-id")[: size + 1])
    beyond = len(found) > size
    rows = found[:size]
    older = {BEFORE: str(Position.of(rows[-1]))} if beyond else None
    newer: dict[str, str] | None = None
    if before is not None:
        newer = {AFTER: str(Position.of(rows[0]))} if rows else {}
    return Page(rows, older, newer)

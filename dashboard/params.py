"""Ids in query strings, parsed strictly.

``str.isdigit`` and ``int`` take more than ASCII digits (superscripts such as ``²`` pass
``isdigit`` and fail ``int``; ``int`` also takes other scripts' digits, signs, spaces and
underscores), and a number past PostgreSQL's ``bigint`` fails in the database. An id
here is 1 to 19 ASCII digits no greater than the largest ``bigint``, and a list of them
is comma-separated, bounded in length, with no empty item.
"""

from __future__ import annotations

import re

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

"""Timestamps as the library writes and reads them (on the wire and in reports).

ISO-8601 in UTC with exactly six fractional digits (microseconds) and a trailing ``Z``,
e.g. ``2026-11-28T03:47:04.123456Z``. Readers also accept every older form
(milliseconds, no fraction, ``+00:00`` or another offset). A module of its own so that
the breaker and the wire format both use it without importing each other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["MAX_TIMESTAMP_LENGTH", "format_timestamp", "parse_timestamp"]

#: Longer strings are refused before parsing (a timestamp is 27 characters).
MAX_TIMESTAMP_LENGTH = 64


@overload
def format_timestamp(moment: None) -> None: ...
@overload
def format_timestamp(moment: datetime | float) -> str: ...
@overload
def format_timestamp(moment: datetime | float | None) -> str | None: ...


def format_timestamp(moment: datetime | float | None) -> str | None:
    """A moment as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds); None stays None.

    ``moment`` is an aware datetime or wall-clock epoch seconds. A naive datetime is a
    ValueError: its time zone would be a guess.
    """
    if moment is None:
        return None
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"moment must be a timezone-aware datetime, got {moment!r}")
        utc = moment.astimezone(UTC)
    else:
        utc = datetime.fromtimestamp(moment, UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(value: object, *, naive_is_utc: bool = False) -> datetime:
    """An ISO-8601 date-time as an aware datetime in UTC.

    Accepts every form writers of this protocol have used (``Z`` or an offset, no,
    three or six fractional digits). Without a time zone it is a ValueError unless
    ``naive_is_utc``. Strings longer than MAX_TIMESTAMP_LENGTH are refused unread.
    """
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        raise ValueError(f"timestamp must be an ISO-8601 date-time string, got {value!r}")
    parsed = datetime.fromisoformat(value)  # Python 3.11+ reads "Z" too
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise ValueError(f"timestamp must have a time zone, got {value!r}")
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # an offset that carries it past year 1 or 9999
        raise ValueError(f"timestamp is out of range, got {value!r}") from None

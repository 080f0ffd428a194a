"""Keyset pages of history on the dashboard (a circuit's transitions, the audit log),
their "older" / "newer" links and the export links of what the page shows.

A page's position is in the URL (``?before=<at>,<id>`` or ``?after=<at>,<id>``, the
API's parameters, ``controlplane.core.keyset``). A position that does not parse is
named on the page, which shows the newest rows instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import QueryDict
from django.urls import reverse

from controlplane.core import keyset
from controlplane.core.export import FORMATS
from controlplane.core.keyset import iso_utc

# Rows per page of the dashboard's history tables.
PAGE_SIZE = 50
FORMAT_LABELS = {"csv": "CSV", "jsonl": "JSON Lines"}


@dataclass(frozen=True)
class HistoryPage:
    rows: list[Any]
    older_url: str | None
    newer_url: str | None
    error: str | None


def _url(query: QueryDict, params: dict[str, str] | None) -> str | None:
    if params is None:
        return None
    kept = query.copy()
    for name in (keyset.BEFORE, keyset.AFTER):
        kept.pop(name, None)
    kept.update(params)
    return f"?{kept.urlencode()}" if kept else "?"


def history_page(queryset: QuerySet[Any], query: QueryDict, size: int = PAGE_SIZE) -> HistoryPage:
    """The page of ``queryset`` that ``query`` asks for (the newest when it names none or
    a bad position, with the error)."""
    error = None
    try:
        before, after = keyset.parse_cursor(query)
    except keyset.KeysetError as exc:
        error = f"{exc.field}: {exc.reason}. Showing the newest rows."
        before = after = None
    page = keyset.page(queryset, before=before, after=after, size=size)
    return HistoryPage(list(page.rows), _url(query, page.older), _url(query, page.newer), error)


def export_window(now: datetime) -> tuple[datetime, datetime]:
    """The longest export window ending at the next UTC midnight after ``now``."""
    until = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return until - timedelta(days=settings.SWITCHYARD_EXPORT_MAX_DAYS), until


def export_links(route: str, filters: dict[str, Any], now: datetime) -> list[dict[str, str]]:
    """``[{"label", "url"}]`` of the API export at ``route`` in each format, for
    ``filters`` over the longest window ending after ``now``."""
    since, until = export_window(now)
    links = []
    for fmt in FORMATS:
        query = QueryDict(mutable=True)
        for name, value in filters.items():
            if isinstance(value, list | tuple):
                query.setlist(name, [str(v) for v in value])
            elif value not in (None, ""):
                query[name] = str(value)
        query.update({"format": fmt, "since": iso_utc(since), "until": iso_utc(until)})
        links.append({"label": FORMAT_LABELS[fmt], "url": f"{reverse(route)}?{query.urlencode()}"})
    return links


def export_days() -> int:
    return int(settings.SWITCHYARD_EXPORT_MAX_DAYS)

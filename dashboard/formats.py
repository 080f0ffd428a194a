"""The one formatter of the dashboard's figures.

Templates use these through the filters of ``templatetags/dashboard.py``; tiles carry
their figures already formatted by them, so live updates (``live.js``) only place the
strings the server made and the first render and a live update cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime


def pct(value: float | None) -> str:
    """A ratio in [0, 1] as "12.5%", or "-" when unknown."""
    if value is None:
        return "-"
    return f"{value * 100:.1f}%"


def per_second(value: float | None) -> str:
    """A rate as "3.2/s", or "-" when unknown."""
    if value is None:
        return "-"
    return f"{value:.1f}/s"


def seconds(value: float | None) -> str:
    """A span of seconds as "5.0 s" (the time a rate covers), or "-" when unknown."""
    if value is None:
        return "-"
    return f"{value:.1f} s"


def latency(value: float | None) -> str:
    """Seconds as milliseconds, "12 ms" or "3.4 ms" (as traffic.js), or "-" when unknown."""
    if value is None:
        return "-"
    ms = value * 1000
    return f"{ms:.0f} ms" if ms >= 10 or ms == 0 else f"{ms:.1f} ms"


def duration(total: float) -> str:
    """A duration in its two largest whole units: "42 s", "6 min 12 s", "2 h 4 min",
    "1 d 3 h" (negative counts as 0)."""
    s = max(0, round(total))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def since(start: datetime | None, now: datetime) -> str:
    """Time from ``start`` to ``now``, or "-" when there is no start."""
    return "-" if start is None else duration((now - start).total_seconds())


def until(end: datetime | None, now: datetime) -> str:
    """Time from ``now`` to ``end``, or "-" when there is no end."""
    return "-" if end is None else duration((end - now).total_seconds())


def relative(seconds: float) -> str:
    """A moment ``seconds`` before now (after it, when negative) in its largest whole
    unit: "just now", "42 s ago", "3 min ago", "2 h ago", "5 d ago", "in 3 min".

    ``times.js`` keeps the same words as the page stays open (``ago`` there; a test
    compares the two)."""
    s = round(abs(seconds))
    if s < 5:
        return "just now"
    if s < 60:
        amount = f"{s} s"
    elif s < 3600:
        amount = f"{s // 60} min"
    elif s < 86400:
        amount = f"{s // 3600} h"
    else:
        amount = f"{s // 86400} d"
    return f"in {amount}" if seconds < 0 else f"{amount} ago"


def exact(moment: datetime) -> str:
    """The exact time, in UTC: "2026-12-05 05:40:12 UTC" (the page shows it in the
    viewer's time zone once ``times.js`` has run)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime) -> str:
    """A machine-readable UTC time for ``<time datetime>``: "2026-12-05T05:40:12Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_label(value: str) -> str:
    """closed, half open, open, forced open, forced closed (the text beside the colour)."""
    return str(value).replace("_", " ")

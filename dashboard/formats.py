"""The one formatter of the dashboard's figures.

Templates use these through the filters of ``templatetags/dashboard.py``; tiles carry
their figures already formatted by them, so live updates (``live.js``) only place the
strings the server made and the first render and a live update cannot disagree.
"""

from __future__ import annotations

from datetime import datetime


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


def duration(total: float) -> str:
    """A duration in whole units: "42s", "3m 5s", "2h 4m", "1d 3h" (negative counts as 0)."""
    s = max(0, round(total))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def since(start: datetime | None, now: datetime) -> str:
    """Time from ``start`` to ``now``, or "-" when there is no start."""
    return "-" if start is None else duration((now - start).total_seconds())


def until(end: datetime | None, now: datetime) -> str:
    """Time from ``now`` to ``end``, or "-" when there is no end."""
    return "-" if end is None else duration((end - now).total_seconds())


def state_label(value: str) -> str:
    """closed, half open, open, forced open, forced closed (the text beside the colour)."""
    return str(value).replace("_", " ")

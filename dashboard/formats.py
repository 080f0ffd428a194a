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


# A time ahead in its two largest units: (unit, its name, the next smaller unit, its name).
_AHEAD_UNITS = ((86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s"))


def _ahead(s: int) -> str:
    """``s`` seconds ahead in the two largest units, the smaller one rounded to the
    nearest (a 7-day token made a second ago expires "in 7 d", not "in 6 d")."""
    for unit, name, smaller, smaller_name in _AHEAD_UNITS:
        count = int(s / smaller + 0.5)  # half up, as Math.floor(x + 0.5) in times.js
        per_unit = unit // smaller
        if count >= per_unit:
            whole, part = divmod(count, per_unit)
            return f"{whole} {name} {part} {smaller_name}" if part else f"{whole} {name}"
    return f"{s} s"


def relative(seconds: float) -> str:
    """A moment ``seconds`` before now (after it, when negative): a past one in its
    largest whole unit ("just now", "42 s ago", "3 min ago", "2 h ago", "5 d ago"), a
    future one as the time left in two units ("in 3 min", "in 6 d 12 h", "in 7 d").

    ``times.js`` keeps the same words as the page stays open (``ago`` there; a test
    compares the two)."""
    s = round(abs(seconds))
    if s < 5:
        return "just now"
    if seconds < 0:
        return f"in {_ahead(s)}"
    if s < 60:
        amount = f"{s} s"
    elif s < 3600:
        amount = f"{s // 60} min"
    elif s < 86400:
        amount = f"{s // 3600} h"
    else:
        amount = f"{s // 86400} d"
    return f"{amount} ago"


def exact(moment: datetime) -> str:
    """The exact time, in UTC: "2026-12-05 05:40:12 UTC" (the page shows it in the
    viewer's time zone once ``times.js`` has run)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime) -> str:
    """A machine-readable UTC time for ``<time datetime>``: "2026-12-05T05:40:12Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def team_label(name: str) -> str:
    """A service's team beside its name: "team payments", or "" without a team."""
    return f"team {name}" if name else ""


def state_label(value: str) -> str:
    """closed, half open, open, forced open, forced closed (the text beside the colour)."""
    return str(value).replace("_", " ")

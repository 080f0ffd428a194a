"""Geometry of the circuit page's small SVG charts (the templates draw them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from controlplane.circuits.models import Snapshot, Transition
from controlplane.circuits.series import MAX_RANGE, STEPS
from dashboard import formats
from dashboard.params import ParamError, parse_window

WIDTH = 600
LANE_HEIGHT = 14
MAX_LANES = 20
MIN_SPAN = timedelta(minutes=5)
#: The latest transitions the circuit page's timeline and failure-rate chart draw.
CHART_TRANSITIONS = 200


class Mark(NamedTuple):
    """One transition as the charts draw it (``instance`` is the agent's instance id)."""

    pk: int
    at: datetime
    instance: str
    from_state: str
    to_state: str
    failure_rate: float | None


def marks(circuit_id: int, limit: int = CHART_TRANSITIONS) -> list[Mark]:
    """The circuit's latest ``limit`` transitions, newest first (one query, no models)."""
    rows = (
        Transition.objects.filter(circuit_id=circuit_id)
        .order_by("-at", "-id")
        .values_list("id", "at", "instance__instance_id", "from_state", "to_state", "failure_rate")
    )
    return [Mark(*row) for row in rows[:limit]]


def _span(transitions: Sequence[Mark], now: datetime) -> tuple[datetime, float]:
    start = min((t.at for t in transitions), default=now) if transitions else now
    start = min(start, now - MIN_SPAN)
    return start, max((now - start).total_seconds(), 1.0)


def timeline(
    transitions: Sequence[Mark], snapshots: Sequence[Snapshot], now: datetime
) -> dict[str, Any]:
    """One lane per instance: coloured segments of each state between its transitions."""
    start, span = _span(transitions, now)
    by_instance: dict[str, list[Mark]] = defaultdict(list)
    for t in sorted(transitions, key=lambda t: (t.at, t.pk)):
        by_instance[t.instance].append(t)
    current = {s.instance.instance_id: s.state for s in snapshots}
    names = sorted(set(by_instance) | set(current))[:MAX_LANES]

    def x(at: datetime) -> float:
        return round(max(0.0, (at - start).total_seconds()) / span * WIDTH, 1)

    lanes = []
    for i, name in enumerate(names):
        items = by_instance.get(name, [])
        segments = []
        state = items[0].from_state if items else current.get(name, "closed")
        at = start
        for t in items:
            segments.append({"x": x(at), "w": max(x(t.at) - x(at), 0.5), "state": state})
            state, at = t.to_state, t.at
        segments.append({"x": x(at), "w": max(WIDTH - x(at), 0.5), "state": state})
        lanes.append({"name": name, "y": i * (LANE_HEIGHT + 4), "segments": segments})
    return {
        "width": WIDTH,
        "height": max(len(lanes), 1) * (LANE_HEIGHT + 4),
        "lane_height": LANE_HEIGHT,
        "lanes": lanes,
        "start": start,
        "end": now,
    }


def failure_rate_chart(
    transitions: Sequence[Mark], now: datetime, height: int = 80
) -> dict[str, Any]:
    """A polyline of the failure rate each transition recorded, over the same span."""
    start, span = _span(transitions, now)
    points = [
        (
            round((t.at - start).total_seconds() / span * WIDTH, 1),
            round(height - max(0.0, min(1.0, t.failure_rate)) * height, 1),
        )
        for t in sorted(transitions, key=lambda t: (t.at, t.pk))
        if t.failure_rate is not None
    ]
    return {
        "width": WIDTH,
        "height": height,
        "points": " ".join(f"{px},{py}" for px, py in points),
        "dots": points,
        "start": start,
        "end": now,
    }


# The traffic charts' ranges: key (the ``?range=`` value), button label, seconds shown
# and the step asked of the series API (at most 360 points in every range).
TRAFFIC_RANGES: tuple[tuple[str, str, int, int], ...] = (
    ("15m", "15 min", 15 * 60, 10),
    ("1h", "1 h", 3600, 10),
    ("6h", "6 h", 6 * 3600, 60),
    ("24h", "24 h", 24 * 3600, 300),
    ("7d", "7 d", 7 * 86400, 3600),
)
DEFAULT_TRAFFIC_RANGE = "1h"


def traffic_range(value: str | None) -> dict[str, Any]:
    """The range of ``?range=`` (an unknown value falls back to the default) and the
    buttons, the chosen one pressed."""
    keys = [key for key, *_ in TRAFFIC_RANGES]
    chosen = value if value in keys else DEFAULT_TRAFFIC_RANGE
    ranges = [
        {"key": key, "label": label, "seconds": seconds, "step": step, "pressed": key == chosen}
        for key, label, seconds, step in TRAFFIC_RANGES
    ]
    return {"range": next(r for r in ranges if r["pressed"]), "ranges": ranges}


#: Points a fixed window's charts draw at most (the step is the smallest that keeps to it).
WINDOW_MAX_POINTS = 360


def traffic_view(query: Any, now: datetime) -> dict[str, Any]:
    """The charts' range from the query string: ``?range=`` (a preset), or a fixed window
    ``?from=&to=`` (what alert links carry; without ``to`` it runs up to now and stays
    live). A window the page cannot show falls back to the preset range and says why
    (a link pasted into a chat never fails the page)."""
    view = traffic_range(query.get("range"))
    view["window"] = None
    view["window_error"] = ""
    try:
        window = parse_window(query.get("from", ""), query.get("to", ""), now, MAX_RANGE)
    except ParamError as exc:
        view["window_error"] = str(exc)
        return view
    if window is None:
        return view
    start, end = window.start, window.end
    shown_end = window.shown_end(now)
    seconds = (shown_end - start).total_seconds()
    step = next((s for s in STEPS if seconds / s <= WINDOW_MAX_POINTS), STEPS[-1])
    for r in view["ranges"]:
        r["pressed"] = False
    view["window"] = {
        "from": formats.iso(start),
        "to": formats.iso(end) if end else "",
        "start": start,
        "end": end,
        "seconds": round(seconds),
        "step": step,
    }
    return view

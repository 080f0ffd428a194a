"""Reads of the incident view: every transition, operator action and alert of the fleet
in one time window, for the timeline (compact rows, drawn by ``incidents.js``) and for
the table below it (newest first, keyset-paged: no OFFSET, no COUNT).

Transitions, audit events and alerts are three tables; the table's order is
(time, kind, id), newest first, and a page's cursor is its last row's (time, kind, id),
so each table is asked for the rows before the cursor in that order
(``WHERE (at, id) < (...) ORDER BY at DESC, id DESC LIMIT n``) and the three answers
are merged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.urls import reverse

from controlplane.alerts.models import WINDOW_MARGIN, Alert
from controlplane.circuits.access import Scope, team_q
from controlplane.circuits.choices import AuditAction
from controlplane.circuits.models import AuditEvent, Circuit, Instance, Transition
from dashboard import formats
from dashboard.history import FORMAT_LABELS, FORMATS
from dashboard.params import (
    ParamError,
    Window,
    parse_id,
    parse_moment,
    parse_name,
    parse_states,
    parse_window,
)

# The presets of ``?range=``: key, button label, seconds.
RANGES: tuple[tuple[str, str, int], ...] = (
    ("15m", "15 min", 15 * 60),
    ("1h", "1 h", 3600),
    ("24h", "24 h", 24 * 3600),
)
DEFAULT_RANGE = "1h"
#: The longest fixed window (``?from=&to=``) the view shows.
MAX_WINDOW = timedelta(days=31)
#: Events of each kind the timeline draws at most; past it the page says so.
TIMELINE_LIMIT = 20_000
#: Rows of the table per page.
PAGE_SIZE = 200

#: The audit actions the view shows: what operators (or expiry) did to a circuit.
ACTIONS: dict[str, str] = {
    AuditAction.OVERRIDE_FORCE: "force",
    AuditAction.OVERRIDE_RELEASE: "release",
    AuditAction.OVERRIDE_EXPIRE: "expire",
    AuditAction.CONFIG_CREATE: "config",
}
# The kinds of row, in their order among rows of the same time (the cursor's tie-break).
KINDS = ("transition", "action", "fired", "resolved")
KIND_LABELS = {
    "transition": "transition",
    "action": "operator action",
    "fired": "alert fired",
    "resolved": "alert resolved",
}
_RANK = {kind: rank for rank, kind in enumerate(KINDS)}


def precise(moment: datetime) -> str:
    """A UTC time with its microseconds, as links and cursors carry it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- the query string --------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentFilters:
    """``service`` (name), ``circuit`` (id), ``state`` (to-state, may repeat) and
    ``instance`` (the agent's instance id). Empty means no filter; anything else that
    does not parse is a ``ParamError`` naming the field."""

    service: str = ""
    circuit: int | None = None
    states: tuple[str, ...] = ()
    instance: str = ""
    # The teams whose services the viewer may see (None: every service); not a filter
    # of the URL, set by the view from the user's roles.
    teams: Scope = None

    @classmethod
    def from_query(cls, query: QueryDict) -> IncidentFilters:
        service = query.get("service", "")
        circuit = query.get("circuit", "")
        instance = query.get("instance", "")
        return cls(
            service=parse_name(service, "service") if service else "",
            circuit=parse_id(circuit, "circuit") if circuit else None,
            states=parse_states([s for s in query.getlist("state") if s]),
            instance=parse_name(instance, "instance") if instance else "",
        )

    def items(self) -> list[tuple[str, str]]:
        """The filters as query items (repeated ``state``), empty ones left out."""
        items = [("service", self.service)] if self.service else []
        if self.circuit is not None:
            items.append(("circuit", str(self.circuit)))
        items += [("state", s) for s in self.states]
        if self.instance:
            items.append(("instance", self.instance))
        return items

    @property
    def narrows_to_transitions(self) -> bool:
        """State and instance are properties of transitions only: with either, only
        transitions are shown (operator actions and alerts have neither)."""
        return bool(self.states or self.instance)


@dataclass(frozen=True)
class IncidentWindow:
    """The window shown: a preset (``range`` set) up to now, or a fixed one. ``error``
    says why the link's window could not be shown (the preset is shown instead)."""

    start: datetime
    end: datetime
    range: str
    fixed: Window | None = None
    error: ParamError | None = None
    ranges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def items(self) -> list[tuple[str, str]]:
        """The window as query items: the preset, or the fixed from/to."""
        if self.fixed is None:
            return [("range", self.range)]
        items = [("from", precise(self.fixed.start))]
        if self.fixed.end is not None:
            items.append(("to", precise(self.fixed.end)))
        return items


def incident_window(query: QueryDict, now: datetime) -> IncidentWindow:
    """The window of ``?range=`` or ``?from=&to=`` (a fixed window wins). An unknown
    range, a time that does not parse, ``from`` not before ``to`` or a window longer
    than MAX_WINDOW leaves ``error`` set and the preset (default 1 h) in force."""
    keys = [key for key, _, _ in RANGES]
    raw_range = query.get("range", "")
    error: ParamError | None = None
    chosen = raw_range or DEFAULT_RANGE
    if chosen not in keys:
        error = ParamError("range", f"must be one of {', '.join(keys)}, got {raw_range[:20]!r}")
        chosen = DEFAULT_RANGE
    fixed = None
    try:
        fixed = parse_window(query.get("from", ""), query.get("to", ""), now, MAX_WINDOW)
    except ParamError as exc:
        error = error or exc
    seconds = next(s for key, _, s in RANGES if key == chosen)
    ranges = [
        {"key": key, "label": label, "pressed": fixed is None and key == chosen}
        for key, label, _ in RANGES
    ]
    if fixed is not None:
        return IncidentWindow(
            fixed.start, fixed.shown_end(now), "", fixed, error=error, ranges=ranges
        )
    return IncidentWindow(now - timedelta(seconds=seconds), now, chosen, error=error, ranges=ranges)


@dataclass(frozen=True)
class Cursor:
    """The last row of a page: (time, kind, id)."""

    at: datetime
    kind: str
    id: int

    @classmethod
    def from_query(cls, query: QueryDict) -> Cursor | None:
        """``before_at`` (an ISO 8601 time) and ``before_id`` (``<kind>:<id>``), both or
        neither."""
        raw_at, raw_id = query.get("before_at", ""), query.get("before_id", "")
        if not raw_at and not raw_id:
            return None
        if not raw_at:
            raise ParamError("before_at", "must be given with before_id")
        if not raw_id:
            raise ParamError("before_id", "must be given with before_at")
        at = parse_moment(raw_at, "before_at")
        kind, _, number = raw_id.partition(":")
        if kind not in _RANK:
            raise ParamError("before_id", f"must be <kind>:<id> with a kind of {', '.join(KINDS)}")
        return cls(at, kind, parse_id(number, "before_id"))

    @property
    def items(self) -> list[tuple[str, str]]:
        return [("before_at", precise(self.at)), ("before_id", f"{self.kind}:{self.id}")]


# --- the queries ---------------------------------------------------------------------------


def _before(cursor: Cursor | None, kind: str, at: str = "at") -> Q:
    """Rows of ``kind`` after ``cursor`` in newest-first (time, kind, id) order; the
    ``at <=`` bound is what an index on the time can use."""
    if cursor is None:
        return Q()
    rank, last = _RANK[kind], _RANK[cursor.kind]
    if rank < last:
        return Q(**{f"{at}__lte": cursor.at})
    if rank > last:
        return Q(**{f"{at}__lt": cursor.at})
    return Q(**{f"{at}__lte": cursor.at}) & (
        Q(**{f"{at}__lt": cursor.at}) | Q(**{at: cursor.at, "id__lt": cursor.id})
    )


def transitions(w: IncidentWindow, f: IncidentFilters) -> QuerySet[Transition]:
    """Transitions in the window [start, end) the filters select."""
    qs = Transition.objects.filter(at__gte=w.start, at__lt=w.end)
    qs = qs.filter(team_q(f.teams, "circuit__service__team"))
    if f.service:
        qs = qs.filter(circuit__service__name=f.service)
    if f.circuit is not None:
        qs = qs.filter(circuit_id=f.circuit)
    if f.states:
        qs = qs.filter(to_state__in=f.states)
    if f.instance:
        qs = qs.filter(instance__instance_id=f.instance)
    return qs


def actions(w: IncidentWindow, f: IncidentFilters) -> QuerySet[AuditEvent]:
    """Forces, releases, expiries and config versions of circuits in the window."""
    qs = AuditEvent.objects.filter(
        at__gte=w.start, at__lt=w.end, action__in=list(ACTIONS), target_type="circuit"
    ).filter(team_q(f.teams, "service__team"))
    if f.service:
        qs = qs.filter(service__name=f.service)
    if f.circuit is not None:
        qs = qs.filter(target_id=str(f.circuit))
    return qs


def _alerts(f: IncidentFilters) -> QuerySet[Alert]:
    qs = Alert.objects.filter(fired_at__isnull=False)
    qs = qs.filter(team_q(f.teams, "circuit__service__team"))
    if f.service:
        qs = qs.filter(circuit__service__name=f.service)
    if f.circuit is not None:
        qs = qs.filter(circuit_id=f.circuit)
    return qs


def alert_spans(w: IncidentWindow, f: IncidentFilters) -> QuerySet[Alert]:
    """Alerts that fired and were firing at some moment of the window."""
    return (
        _alerts(f)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=w.start))
        .filter(fired_at__lt=w.end)
    )


# --- the timeline ------------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _forced_state(action: str, after: Any) -> str:
    """The state a force set ("" for other actions)."""
    if action != AuditAction.OVERRIDE_FORCE or not isinstance(after, dict):
        return ""
    return str(after.get("state", ""))


def _action_text(action: str, actor: str, after: Any) -> str:
    kind = ACTIONS.get(action, action)
    if kind == "force":
        state = after.get("state", "") if isinstance(after, dict) else ""
        return f"{formats.state_label(state) or 'forced'} by {actor}"
    if kind == "release":
        return f"released by {actor}"
    if kind == "expire":
        return "override expired"
    version = after.get("version") if isinstance(after, dict) else None
    return f"config v{version} by {actor}" if version else f"config changed by {actor}"


def timeline(w: IncidentWindow, f: IncidentFilters, limit: int | None = None) -> dict[str, Any]:
    """The timeline's data, compact (times in ms since the epoch, ids into the
    ``circuits`` and ``instances`` maps): every event of the window up to ``limit``
    (TIMELINE_LIMIT) of each kind, with ``truncated`` saying which kinds had more."""
    limit = TIMELINE_LIMIT if limit is None else limit
    # The names come with the rows (joined per row: a lookup of thousands of ids by a
    # list would cost more than the rows).
    rows = list(
        transitions(w, f)
        .order_by("at", "id")
        .values_list(
            "at", "circuit_id", "instance_id", "from_state", "to_state", "reason",
            "circuit__service__name", "circuit__name", "instance__instance_id",
        )[: limit + 1]
    )  # fmt: skip
    audit: list[Any] = []
    spans: list[Any] = []
    if not f.narrows_to_transitions:
        audit = list(
            actions(w, f)
            .order_by("at", "id")
            .values_list("at", "target_id", "action", "actor_name", "reason", "after")[: limit + 1]
        )
        spans = list(
            alert_spans(w, f)
            .order_by("fired_at", "id")
            .values_list(
                "id", "fired_at", "resolved_at", "started_at", "circuit_id", "rule__name",
                "rule__severity",
            )[: limit + 1]
        )  # fmt: skip
    truncated = {
        "transitions": len(rows) > limit,
        "actions": len(audit) > limit,
        "alerts": len(spans) > limit,
    }
    rows, audit, spans = rows[:limit], audit[:limit], spans[:limit]
    circuits = {r[1]: (r[6], r[7]) for r in rows}
    others = {s[4] for s in spans} | {int(a[1]) for a in audit if a[1].isdigit()}
    circuits.update(_circuit_names(others - circuits.keys()))
    instances = {r[2]: r[8] for r in rows}
    services = sorted({service for service, _ in circuits.values()})
    lane = {service: i for i, service in enumerate(services)}
    counts: dict[str, Counter[str]] = {s: Counter() for s in services}
    for r in rows:
        counts[circuits[r[1]][0]]["transitions"] += 1
    for a in audit:
        if a[1].isdigit() and int(a[1]) in circuits:
            counts[circuits[int(a[1])][0]]["actions"] += 1
    for s in spans:
        counts[circuits[s[4]][0]]["alerts"] += 1
    return {
        "start": _ms(w.start),
        "end": _ms(w.end),
        "limit": limit,
        "truncated": truncated,
        "lanes": [
            {
                "service": s,
                "transitions": counts[s]["transitions"],
                "actions": counts[s]["actions"],
                "alerts": counts[s]["alerts"],
            }
            for s in services
        ],
        "circuits": {str(pk): [lane[svc], f"{svc}/{name}"] for pk, (svc, name) in circuits.items()},
        "instances": {str(pk): name for pk, name in instances.items()},
        "transitions": [[_ms(r[0]), r[1], r[2], r[3], r[4], r[5]] for r in rows],
        "actions": [
            [
                _ms(at),
                int(target),
                ACTIONS.get(action, action),
                _action_text(action, actor, after),
                _forced_state(action, after),
            ]
            for at, target, action, actor, _, after in audit
            if target.isdigit() and int(target) in circuits
        ],
        "alerts": [
            [
                _ms(fired),
                _ms(resolved) if resolved else None,
                c,
                rule,
                severity,
                Alert(pk=pk, circuit_id=c, started_at=started, resolved_at=resolved).window_query,
            ]
            for pk, fired, resolved, started, c, rule, severity in spans
        ],
        "circuit_url": reverse("dashboard:circuit", args=[0]),
        "margin": int(WINDOW_MARGIN.total_seconds()),
    }


# --- the table -----------------------------------------------------------------------------


def circuit_link(circuit_id: int, at: datetime) -> str:
    """The circuit page at the window around ``at`` (WINDOW_MARGIN each side)."""
    query = urlencode(
        {"from": formats.iso(at - WINDOW_MARGIN), "to": formats.iso(at + WINDOW_MARGIN)},
        safe=":",
    )
    return f"{reverse('dashboard:circuit', args=[circuit_id])}?{query}#traffic"


def _transition_rows(
    w: IncidentWindow, f: IncidentFilters, cursor: Cursor | None, n: int
) -> list[dict[str, Any]]:
    # The page first, then its names: joined in the query, PostgreSQL may join every
    # transition of the window before it sorts and cuts the page.
    page = list(
        transitions(w, f)
        .filter(_before(cursor, "transition"))
        .order_by("-at", "-id")
        .values("id", "at", "circuit_id", "instance_id", "from_state", "to_state", "reason")[:n]
    )
    circuits = _circuit_names({t["circuit_id"] for t in page})
    instances = dict(
        Instance.objects.filter(pk__in={t["instance_id"] for t in page})
        .order_by()
        .values_list("id", "instance_id")
    )
    return [
        {
            "kind": "transition",
            "id": t["id"],
            "at": t["at"],
            "circuit_id": t["circuit_id"],
            "circuit": "/".join(circuits[t["circuit_id"]]),
            "service": circuits[t["circuit_id"]][0],
            "instance": instances[t["instance_id"]],
            "from_state": t["from_state"],
            "state": t["to_state"],
            "detail": t["reason"],
            "link": circuit_link(t["circuit_id"], t["at"]),
        }
        for t in page
    ]


def _circuit_names(ids: set[int]) -> dict[int, tuple[str, str]]:
    """(service name, circuit name) of a few circuits."""
    if not ids:
        return {}
    found = Circuit.objects.filter(pk__in=ids).values_list("id", "service__name", "name")
    return {pk: (service, name) for pk, service, name in found}


def _action_rows(
    w: IncidentWindow, f: IncidentFilters, cursor: Cursor | None, n: int
) -> list[dict[str, Any]]:
    qs = (
        actions(w, f)
        .filter(_before(cursor, "action"))
        .order_by("-at", "-id")
        .values("id", "at", "target_id", "target_repr", "action", "actor_name", "reason", "after")[
            :n
        ]
    )
    rows = []
    for a in qs:
        circuit_id = int(a["target_id"]) if a["target_id"].isdigit() else None
        rows.append(
            {
                "kind": "action",
                "id": a["id"],
                "at": a["at"],
                "circuit_id": circuit_id,
                "circuit": a["target_repr"],
                "service": a["target_repr"].split("/", 1)[0],
                "instance": "",
                "action": ACTIONS.get(a["action"], a["action"]),
                "what": _action_text(a["action"], a["actor_name"], a["after"]),
                "detail": a["reason"],
                "link": circuit_link(circuit_id, a["at"]) if circuit_id else "",
            }
        )
    return rows


def _alert_rows(
    kind: str, w: IncidentWindow, f: IncidentFilters, cursor: Cursor | None, n: int
) -> list[dict[str, Any]]:
    at = "fired_at" if kind == "fired" else "resolved_at"
    qs = (
        _alerts(f)
        .filter(**{f"{at}__gte": w.start, f"{at}__lt": w.end})
        .filter(_before(cursor, kind, at))
        .order_by(f"-{at}", "-id")
        .select_related("rule", "circuit__service")[:n]
    )
    return [
        {
            "kind": kind,
            "id": a.pk,
            "at": getattr(a, at),
            "circuit_id": a.circuit_id,
            "circuit": f"{a.circuit.service.name}/{a.circuit.name}",
            "service": a.circuit.service.name,
            "instance": "",
            "severity": a.rule.severity,
            "what": f"{a.rule.name} {'fired' if kind == 'fired' else 'resolved'}",
            "detail": a.rule.get_kind_display(),
            "link": f"{reverse('dashboard:circuit', args=[a.circuit_id])}?{a.window_query}#traffic",
        }
        for a in qs
    ]


def _key(row: dict[str, Any]) -> tuple[datetime, int, int]:
    return row["at"], _RANK[row["kind"]], row["id"]


def table_page(
    w: IncidentWindow, f: IncidentFilters, cursor: Cursor | None, size: int | None = None
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of the table (``size`` rows, PAGE_SIZE), newest first, and the cursor
    of the next (older) page (None on the last). Each kind is read with
    ``LIMIT size + 1`` before the cursor."""
    size = PAGE_SIZE if size is None else size
    n = size + 1
    rows: list[dict[str, Any]] = _transition_rows(w, f, cursor, n)
    if not f.narrows_to_transitions:
        rows += _action_rows(w, f, cursor, n)
        rows += _alert_rows("fired", w, f, cursor, n)
        rows += _alert_rows("resolved", w, f, cursor, n)
    rows.sort(key=_key, reverse=True)
    page, more = rows[:size], len(rows) > size
    last = page[-1] if page else None
    return page, (Cursor(last["at"], last["kind"], last["id"]) if more and last else None)


# --- links -------------------------------------------------------------------------------


def query_string(items: Iterable[tuple[str, str]]) -> str:
    return urlencode(list(items), safe=":")


def export_links(w: IncidentWindow, f: IncidentFilters) -> list[dict[str, str]]:
    """The API's transitions export of this window and these filters."""
    window = [("since", precise(w.start)), ("until", precise(w.end))]
    path = reverse("transition-export")
    return [
        {
            "format": key,
            "label": FORMAT_LABELS[key],
            "url": f"{path}?{query_string([('format', key), *window, *f.items()])}",
        }
        for key in FORMATS
    ]

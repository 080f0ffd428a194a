"""Jump to a circuit or a service by name: the header's search box and its page.

A query matches a circuit when it occurs, case-insensitively, in the circuit's name, its
service's name or its path ``service/name``, and a service when it occurs in its name.
Results rank exact, then prefix, then contains; at each level a service comes first,
then circuits that match by their own name (or path), then circuits that match by their
service's name only; ties keep the database's name order. At most ``limit`` results.

Names use the characters of ``NAME_PATTERN`` (ASCII letters, digits, ``_ . : / @ + -``),
so a query with any other character matches nothing and is answered without a query
(which also keeps PostgreSQL and SQLite alike: no locale's case mapping is involved).

Two queries answer a search (circuits, services), then one more annotates the fleet state
of the circuits returned (``controlplane.circuits.fleet.with_fleet_state``), never of the
rest of the fleet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db.models import Case, CharField, IntegerField, Q, Value, When
from django.db.models.functions import Concat
from django.urls import reverse

from controlplane.circuits.access import Scope, team_q
from controlplane.circuits.choices import NAME_MAX_LENGTH
from controlplane.circuits.fleet import with_fleet_state
from controlplane.circuits.models import Circuit, Service
from dashboard import formats
from dashboard.params import ParamError

# The longest query: a full path "service/name" of two names at their longest.
MAX_QUERY_LENGTH = 2 * NAME_MAX_LENGTH + 1
# Results per answer: the header box asks for DEFAULT_LIMIT, the page shows MAX_LIMIT.
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.:/@+\-]+", re.ASCII)
_LIMIT = re.compile(r"[0-9]{1,3}", re.ASCII)

# Scores (lower first). Services take the even scores of their level and sort before
# circuits of the same score.
EXACT, EXACT_BY_SERVICE, PREFIX, PREFIX_BY_SERVICE, CONTAINS, CONTAINS_BY_SERVICE = range(6)


@dataclass(frozen=True)
class Result:
    """One answer: a circuit (with its fleet state) or a service."""

    kind: str  # "circuit" or "service"
    label: str  # "service/name" or the service's name
    service: str
    name: str  # the circuit's name; "" for a service
    url: str
    state: str | None  # the circuit's fleet state; None for a service
    score: int

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "service": self.service,
            "name": self.name,
            "url": self.url,
            "state": self.state,
            "state_label": formats.state_label(self.state) if self.state else None,
        }


def parse_query(raw: str) -> str:
    """The query, stripped (``ParamError`` on ``q`` past MAX_QUERY_LENGTH characters)."""
    q = raw.strip()
    if len(q) > MAX_QUERY_LENGTH:
        raise ParamError("q", f"at most {MAX_QUERY_LENGTH} characters, got {len(q)}")
    return q


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT) -> int:
    """``limit``: 1 to MAX_LIMIT in ASCII digits; absent means ``default``."""
    if raw is None or raw == "":
        return default
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise ParamError("limit", f"must be an integer from 1 to {MAX_LIMIT}, got {shown!r}")
    return int(raw)


def _circuit_matches(q: str, limit: int, teams: Scope) -> list[tuple[int, int, str, str]]:
    """The first ``limit`` circuits of ``teams`` that match ``q``: (id, score, service, name)."""
    path = Concat("service__name", Value("/"), "name", output_field=CharField())
    qs = Circuit.objects.filter(team_q(teams, "service__team")).annotate(path=path)
    # Without a "/" the path matches exactly where the name or the service does; with
    # one, a match may span the separator ("checkout/pay") and counts as the name's.
    slash = "/" in q
    own_exact = Q(name__iexact=q) | Q(path__iexact=q) if slash else Q(name__iexact=q)
    own_prefix = (
        Q(name__istartswith=q) | Q(path__istartswith=q) if slash else Q(name__istartswith=q)
    )
    own_contains = Q(path__icontains=q) if slash else Q(name__icontains=q)
    score = Case(
        When(own_exact, then=Value(EXACT)),
        When(service__name__iexact=q, then=Value(EXACT_BY_SERVICE)),
        When(own_prefix, then=Value(PREFIX)),
        When(service__name__istartswith=q, then=Value(PREFIX_BY_SERVICE)),
        When(own_contains, then=Value(CONTAINS)),
        default=Value(CONTAINS_BY_SERVICE),
        output_field=IntegerField(),
    )
    rows = (
        qs.filter(path__icontains=q)
        .annotate(score=score)
        .order_by("score", "service__name", "name")
        .values_list("id", "score", "service__name", "name")
    )
    return [(int(pk), int(sc), str(svc), str(name)) for pk, sc, svc, name in rows[:limit]]


def _service_matches(q: str, limit: int, teams: Scope) -> list[tuple[int, str]]:
    """The first ``limit`` services of ``teams`` that match ``q``: (score, name)."""
    score = Case(
        When(name__iexact=q, then=Value(EXACT)),
        When(name__istartswith=q, then=Value(PREFIX)),
        default=Value(CONTAINS),
        output_field=IntegerField(),
    )
    rows = (
        Service.objects.filter(team_q(teams, "team"), name__icontains=q)
        .annotate(score=score)
        .order_by("score", "name")
        .values_list("score", "name")
    )
    return [(int(sc), str(name)) for sc, name in rows[:limit]]


def service_url(name: str) -> str:
    """The overview filtered to one service (the dashboard's page of a service)."""
    return reverse("dashboard:overview") + "?" + urlencode({"service": name})


def search(
    q: str, limit: int = DEFAULT_LIMIT, now: datetime | None = None, teams: Scope = None
) -> tuple[list[Result], bool]:
    """The first ``limit`` results for ``q`` (already parsed) among the services of
    ``teams`` (None: all), and whether there are more."""
    if not q or not _NAME_CHARS.fullmatch(q):
        return [], False
    circuits = _circuit_matches(q, limit + 1, teams)
    services = _service_matches(q, limit + 1, teams)
    ranked: list[tuple[int, int, int]] = [(score, 0, i) for i, (score, _) in enumerate(services)]
    ranked += [(score, 1, i) for i, (_, score, _, _) in enumerate(circuits)]
    ranked.sort()  # stable within a kind: each list keeps the database's order
    more = len(ranked) > limit
    ranked = ranked[:limit]
    shown = [circuits[i][0] for _, kind, i in ranked if kind == 1]
    states: dict[int, str] = {}
    if shown:
        annotated: Any = with_fleet_state(Circuit.objects.filter(pk__in=shown), now)
        states = dict(annotated.values_list("id", "fleet_state"))
    results = []
    for score, kind, i in ranked:
        if kind == 0:
            name = services[i][1]
            results.append(Result("service", name, name, "", service_url(name), None, score))
        else:
            pk, _, service, name = circuits[i]
            results.append(
                Result(
                    "circuit",
                    f"{service}/{name}",
                    service,
                    name,
                    reverse("dashboard:circuit", args=[pk]),
                    states.get(pk),
                    score,
                )
            )
    return results, more

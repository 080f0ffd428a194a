"""Teams: every API endpoint and dashboard page x every role x an object of the user's
team (A) or of another team (B), with the exact status; lists and exports cut to the
visible teams; the query count of a permission check pinned; the team in the audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from breakers.config import field_specs
from controlplane.circuits import access
from controlplane.circuits.drills import start_drill
from controlplane.circuits.models import (
    AuditEvent,
    Circuit,
    Service,
    Snapshot,
)
from controlplane.circuits.operations import create_config_version, force_circuit, release_circuit
from controlplane.circuits.rollouts import start_rollout
from controlplane.circuits.shadow import start_shadow
from tests.circuits.teams import Side, _user
from tests.streaming import body

ROLES = [
    "global_viewer",
    "global_operator",
    "global_admin",
    "team_viewer",
    "team_operator",
    "team_admin",
    "no_role",
]


# What each endpoint needs: "read" (a viewer's), "operate" (an operator's), "manage"
# (an admin's: tokens, members), "admin_read" (an admin's read: tokens), and
# "silence_create" (the team is in the body, not the URL: another team's is a 403).
def expected(kind: str, role: str, side: str, ok: int) -> int:
    scope, _, name = role.partition("_")
    if scope == "no":
        return 403
    rank = {"viewer": 0, "operator": 1, "admin": 2}[name]
    need = {"read": 0, "operate": 1, "silence_create": 1, "manage": 2, "admin_read": 2}[kind]
    if scope == "global":
        return ok if rank >= need else 403
    if rank < need:
        return 403
    if side == "A":
        return ok
    return 403 if kind == "silence_create" else 404


# What some cases need before their request, made by the system (no user): a config
# version, two, a live instance with the circuit and no override (a drill), a running
# drill, rollout or shadow evaluation. Each returns nothing; ids go to ``Side.extra``.
def _v1(s: Side) -> None:
    if s.circuit.config_versions.exists():
        return
    s.circuit.current_config = create_config_version(
        s.circuit, {}, expected_version=0, user=None, reason="v1"
    )


def _v2(s: Side) -> None:
    _v1(s)
    create_config_version(
        s.circuit, {"failure_threshold": 3}, expected_version=1, user=None, reason="v2"
    )


def _drillable(s: Side) -> None:
    release_circuit(s.circuit, user=None, reason="matrix")
    Snapshot.objects.create(
        instance=s.instance, circuit=s.circuit, state="closed", updated_at=timezone.now()
    )


def _drill(s: Side) -> None:
    _drillable(s)
    drill = start_drill(s.circuit, reason="x", duration=60, share=100, user=None)
    s.extra["drill"] = drill.pk


def _rollout(s: Side) -> None:
    _v1(s)
    rollout = start_rollout(
        s.circuit, user=None, config={"failure_threshold": 3}, percent=50, reason="x"
    )
    s.extra["rollout"] = rollout.pk


def _shadow(s: Side) -> None:
    _v1(s)
    start_shadow(s.circuit, config={"failure_threshold": 3}, user=None, reason="x")


def _then(prepare: Callable[[Side], None], payload: Any = None) -> Callable[[Side, Side], Any]:
    """A case's body maker that first makes what the request needs."""

    def make(s: Side, _: Side) -> Any:
        prepare(s)
        return payload

    return make


def _api_cases() -> list[tuple[str, str, str, Callable[[Side, Side], Any], int]]:
    def config(s: Side, _: Side) -> dict[str, Any]:
        return {"expected_version": 0, "config": {"failure_threshold": 7}, "reason": "x"}

    def silence(s: Side, _: Side) -> dict[str, Any]:
        expires = (timezone.now() + timedelta(hours=1)).isoformat()
        return {"service": s.service.pk, "expires_at": expires, "reason": "x"}

    none = lambda s, o: None  # noqa: E731
    return [
        ("read", "GET", "/api/v1/services/{service}/", none, 200),
        ("read", "GET", "/api/v1/services/{service}/series/", none, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/", none, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/transitions/", none, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/config/", none, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/override/", none, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/series/", none, 200),
        ("read", "GET", "/api/v1/instances/{instance}/", none, 200),
        ("read", "GET", "/api/v1/transitions/{transition}/", none, 200),
        ("read", "GET", "/api/v1/audit/{audit}/", none, 200),
        ("read", "GET", "/api/v1/alerts/{alert}/", none, 200),
        ("read", "GET", "/api/v1/silences/{silence}/", none, 200),
        ("operate", "POST", "/api/v1/circuits/{circuit}/override/",
         lambda s, o: {"state": "forced_closed", "reason": "x"}, 201),
        ("operate", "DELETE", "/api/v1/circuits/{circuit}/override/",
         lambda s, o: {"reason": "x"}, 204),
        ("operate", "POST", "/api/v1/circuits/{circuit}/config/", config, 201),
        ("operate", "POST", "/api/v1/alerts/{alert}/ack/", none, 200),
        ("silence_create", "POST", "/api/v1/silences/", silence, 201),
        ("operate", "DELETE", "/api/v1/silences/{silence}/", none, 204),
        ("admin_read", "GET", "/api/v1/services/{service}/tokens/", none, 200),
        ("manage", "POST", "/api/v1/services/{service}/tokens/", lambda s, o: {"label": "x"}, 201),
        ("manage", "DELETE", "/api/v1/services/{service}/tokens/{token}/", none, 204),
        ("manage", "POST", "/api/v1/teams/{team}/members/",
         lambda s, o: {"user": "no_role", "role": "viewer"}, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/config/diff/?from=1&to=2", _then(_v2), 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/drills/", none, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/drills/{drill}/", _then(_drill), 200),
        ("operate", "POST", "/api/v1/circuits/{circuit}/drills/",
         _then(_drillable, {"share": 100, "duration": 60, "reason": "x"}), 201),
        ("operate", "POST", "/api/v1/circuits/{circuit}/drills/{drill}/end/", _then(_drill), 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/rollouts/", none, 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/rollouts/{rollout}/", _then(_rollout), 200),
        ("operate", "POST", "/api/v1/circuits/{circuit}/rollouts/",
         _then(_v1, {"config": {"failure_threshold": 3}, "percent": 50, "reason": "x"}), 201),
        ("operate", "POST", "/api/v1/circuits/{circuit}/rollouts/{rollout}/promote/",
         _then(_rollout), 200),
        ("operate", "POST", "/api/v1/circuits/{circuit}/rollouts/{rollout}/rollback/",
         _then(_rollout), 200),
        ("read", "GET", "/api/v1/circuits/{circuit}/shadow/", none, 200),
        ("operate", "POST", "/api/v1/circuits/{circuit}/shadow/",
         _then(_v1, {"config": {"failure_threshold": 3}, "reason": "x"}), 201),
        ("operate", "DELETE", "/api/v1/circuits/{circuit}/shadow/", _then(_shadow), 204),
    ]  # fmt: skip


def _url(template: str, s: Side) -> str:
    return template.format(
        service=s.service.pk, circuit=s.circuit.pk, instance=s.instance.pk,
        transition=s.transition.pk, audit=s.audit.pk, alert=s.alert.pk,
        silence=s.silence.pk, token=s.token_id, team=s.team.pk, **s.extra,
    )  # fmt: skip


API_CASES = _api_cases()


@pytest.mark.parametrize("side", ["A", "B"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", API_CASES, ids=[f"{c[1]} {c[2]}" for c in API_CASES])
def test_api_matrix(
    world: dict[str, Side],
    api_client_for: Callable[[User | None], APIClient],
    case: Any,
    role: str,
    side: str,
) -> None:
    # The members case adds the no_role user to a team: it exists in every case.
    users = {r: _user(r, world) for r in {role, "no_role"}}
    kind, method, template, make_body, ok = case
    s, other = world[side], world["B" if side == "A" else "A"]
    client = api_client_for(users[role])
    payload = _json(make_body(s, other))  # first: it may make what the URL names
    response = client.generic(method, _url(template, s), data=payload,
                              content_type="application/json")  # fmt: skip
    assert response.status_code == expected(kind, role, side, ok), response.content


def _json(payload: Any) -> str:
    import json

    return "" if payload is None else json.dumps(payload)


LISTS = [
    ("/api/v1/services/", "service"),
    ("/api/v1/circuits/", "circuit"),
    ("/api/v1/instances/", "instance"),
    ("/api/v1/transitions/", "transition"),
    ("/api/v1/audit/", "audit"),
    ("/api/v1/alerts/", "alert"),
    ("/api/v1/silences/", "silence"),
    ("/api/v1/teams/", "team"),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path,what", LISTS)
def test_api_lists_show_the_visible_teams_only(
    world: dict[str, Side],
    api_client_for: Callable[[User | None], APIClient],
    role: str,
    path: str,
    what: str,
) -> None:
    client = api_client_for(_user(role, world))
    response = client.get(path)
    if role == "no_role":
        assert response.status_code == 403
        return
    assert response.status_code == 200, response.content
    ids = {row["id"] for row in response.json()["results"]}

    def pk(side: str) -> int:
        obj = getattr(world[side], what)
        return int(obj.pk)

    assert pk("A") in ids
    assert (pk("B") in ids) is role.startswith("global")


@pytest.mark.parametrize("role", ["global_viewer", "team_viewer"])
@pytest.mark.parametrize("path", ["/api/v1/transitions/export/", "/api/v1/audit/export/"])
def test_exports_hold_the_visible_teams_only(
    world: dict[str, Side],
    api_client_for: Callable[[User | None], APIClient],
    role: str,
    path: str,
) -> None:
    now = timezone.now()
    window = {
        "since": (now - timedelta(hours=1)).isoformat(),
        "until": (now + timedelta(minutes=1)).isoformat(),
        "format": "jsonl",
    }
    response = api_client_for(_user(role, world)).get(path, window)
    assert response.status_code == 200
    text = body(response).decode()
    assert "alpha" in text
    assert ("bravo" in text) is (role == "global_viewer")


def _page_cases() -> list[tuple[str, str, str, Callable[[Side], dict[str, Any]], int]]:
    def config(s: Side) -> dict[str, Any]:
        form = {f.name: "" if f.default is None else str(f.default) for f in field_specs()}
        form.update(max_timeout="300", expected_version="0", failure_threshold="3")
        return {**form, "reason": "x", "confirm": "1"}

    return [
        ("read", "GET", "/circuits/{circuit}/", lambda s: {}, 200),
        ("operate", "POST", "/circuits/{circuit}/override",
         lambda s: {"action": "release", "reason": "x", "confirm": "1"}, 302),
        ("operate", "POST", "/circuits/{circuit}/config", config, 302),
        ("operate", "POST", "/alerts/{alert}/ack", lambda s: {}, 302),
        ("operate", "GET", "/alerts/silence?alert={alert}", lambda s: {}, 200),
        ("operate", "POST", "/alerts/silence",
         lambda s: {"alert": s.alert.pk, "match": "service", "reason": "x",
                    "expires_in_minutes": 30, "confirm": "1"}, 302),
        ("operate", "POST", "/silences/{silence}/end", lambda s: {}, 302),
        ("read", "GET", "/circuits/{circuit}/config/diff?from=1&to=2", _prepared(_v2, {}), 200),
        ("operate", "POST", "/circuits/{circuit}/drills",
         _prepared(_drillable, {"share": "100", "duration": "60", "reason": "x"}), 302),
        ("operate", "POST", "/circuits/{circuit}/drills/{drill}/end", _prepared(_drill, {}), 302),
        ("read", "GET", "/circuits/{circuit}/rollouts/groups", _prepared(_rollout, {}), 200),
        ("operate", "POST", "/circuits/{circuit}/rollouts/start",
         lambda s: _prepared(_v1, {**config(s), "percent": "50"})(s), 302),
        ("operate", "POST", "/circuits/{circuit}/rollouts/{rollout}/promote",
         _prepared(_rollout, {}), 302),
        ("operate", "POST", "/circuits/{circuit}/rollouts/{rollout}/rollback",
         _prepared(_rollout, {}), 302),
        ("operate", "POST", "/circuits/{circuit}/shadow",
         lambda s: _prepared(_v1, {**config(s), "shadow": "start"})(s), 302),
        ("operate", "POST", "/circuits/{circuit}/shadow",
         _prepared(_shadow, {"shadow": "stop", "reason": "x"}), 302),
    ]  # fmt: skip


def _prepared(
    prepare: Callable[[Side], None], form: dict[str, Any]
) -> Callable[[Side], dict[str, Any]]:
    """A page case's form maker that first makes what the request needs."""

    def make(s: Side) -> dict[str, Any]:
        prepare(s)
        return form

    return make


PAGE_CASES = _page_cases()


@pytest.mark.parametrize("side", ["A", "B"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", PAGE_CASES, ids=[f"{c[1]} {c[2]}" for c in PAGE_CASES])
def test_dashboard_matrix(world: dict[str, Side], case: Any, role: str, side: str) -> None:
    kind, method, template, make_body, ok = case
    s = world[side]
    client = Client()
    client.force_login(_user(role, world))
    form = make_body(s)  # first: it may make what the URL names
    url = _url(template, s)
    response = client.get(url) if method == "GET" else client.post(url, form)
    assert response.status_code == expected(kind, role, side, ok), response.content[:300]


PAGES = ["/", "/services/", "/instances/", "/audit/", "/incidents/", "/alerts/",
         "/search/?q=db", "/?format=json"]  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", PAGES)
def test_dashboard_pages_show_the_visible_teams_only(
    world: dict[str, Side], role: str, path: str
) -> None:
    client = Client()
    client.force_login(_user(role, world))
    response = client.get(path)
    if role == "no_role":
        assert response.status_code == 403
        return
    assert response.status_code == 200
    html = response.content.decode()
    assert "alpha" in html
    assert ("bravo" in html) is role.startswith("global")


def test_a_services_team_shows_on_the_overview_and_the_service_list(
    world: dict[str, Side],
) -> None:
    client = Client()
    client.force_login(_user("global_viewer", world))
    overview = client.get("/").content.decode()
    assert "team team-alpha</span>" in overview and "team team-bravo</span>" in overview
    services = client.get("/services/").content.decode()
    assert '<td data-label="Team">team-alpha</td>' in services


def test_a_team_users_permission_check_costs_one_query(world: dict[str, Side]) -> None:
    user = User.objects.get(pk=_user("team_operator", world).pk)
    user.get_all_permissions()  # the global roles: Django's own cache, as before teams
    with CaptureQueriesContext(connection) as queries:
        assert access.may(user, "circuits.override_circuit", world["A"].team.pk)
        assert not access.may(user, "circuits.override_circuit", world["B"].team.pk)
        assert access.scope(user, "circuits.view_circuit") == {world["A"].team.pk}
        assert access.may_somewhere(user, "alerts.acknowledge_alert")
    assert len(queries) == 1


def test_a_global_users_permission_check_costs_no_query(world: dict[str, Side]) -> None:
    user = User.objects.get(pk=_user("global_operator", world).pk)
    user.get_all_permissions()
    with CaptureQueriesContext(connection) as queries:
        assert access.may(user, "circuits.override_circuit", world["B"].team.pk)
        assert access.scope(user, "circuits.view_circuit") is None
    assert len(queries) == 0


@pytest.mark.parametrize("role", ["global_viewer", "team_viewer"])
def test_a_request_reads_the_memberships_once_and_only_for_a_team_role(
    world: dict[str, Side],
    api_client_for: Callable[[User | None], APIClient],
    role: str,
) -> None:
    client = api_client_for(_user(role, world))
    url = f"/api/v1/circuits/{world['A'].circuit.pk}/override/"
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200  # a scoped read with an object check
    membership_reads = [q for q in queries if "circuits_membership" in q["sql"]]
    assert len(membership_reads) == (1 if role == "team_viewer" else 0)


def test_the_audit_records_the_team_of_the_service(
    world: dict[str, Side], api_client_for: Callable[[User | None], APIClient]
) -> None:
    client = api_client_for(_user("team_operator", world))
    a = world["A"]
    assert (
        client.delete(
            f"/api/v1/circuits/{a.circuit.pk}/override/", {"reason": "x"}, format="json"
        ).status_code
        == 204
    )
    event = AuditEvent.objects.filter(service=a.service).order_by("-at", "-id").first()
    assert event is not None and (event.action, event.team) == ("override.release", "team-alpha")
    listed = client.get("/api/v1/audit/", {"action": "override.release"}).json()["results"]
    assert [(row["service"], row["team"]) for row in listed] == [("alpha", "team-alpha")]
    # A service without a team leaves the team empty.
    bare = Service.objects.create(name="bare")
    circuit = Circuit.objects.create(service=bare, name="c")
    force_circuit(
        circuit, "forced_open", reason="x", user=User.objects.get(username="team_operator")
    )
    event = AuditEvent.objects.filter(service=bare).get()
    assert event.team == ""

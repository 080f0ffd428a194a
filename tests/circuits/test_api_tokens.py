"""Personal API tokens: scope x team x action, expiry and revocation (401 naming why),
creation within the user's rights (400 naming the field), the list with last use, the
query budget of a token request, and the command."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.circuits.auth import create_api_token
from controlplane.circuits.models import APIToken, AuditEvent, Override, Team
from tests.circuits.teams import Side, _user

FORCE = {"state": "forced_open", "reason": "drill"}


def _client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _token(user: User, scope: str, team: Team | None = None, days: int | None = None) -> str:
    return create_api_token(user, scope=scope, team=team, days=days)[1]


def _force(client: APIClient, side: Side) -> Any:
    # The world's circuits start forced open by its admin: release, then force again.
    return client.post(f"/api/v1/circuits/{side.circuit.pk}/override/", FORCE, format="json")


# (user's role, token scope, token team, circuit's team, expected status of a force)
FORCE_CASES = [
    ("global_operator", "read", None, "A", 403),
    ("global_operator", "operate", None, "A", 201),
    ("global_operator", "operate", "A", "A", 201),
    ("global_operator", "operate", "A", "B", 404),  # team B's circuit is out of sight
    ("global_operator", "admin", None, "B", 201),
    ("global_viewer", "admin", None, "A", 403),  # a scope adds nothing to the user
    ("team_operator", "operate", None, "A", 201),
    ("team_operator", "operate", None, "B", 404),
    ("team_operator", "read", "A", "A", 403),
    ("team_viewer", "admin", "A", "A", 403),
    ("global_admin", "admin", "B", "A", 404),
    ("global_admin", "admin", "B", "B", 201),
]


@pytest.mark.parametrize("role,scope,team,side,status", FORCE_CASES)
def test_a_token_forces_only_within_its_user_its_scope_and_its_team(
    world: dict[str, Side], role: str, scope: str, team: str | None, side: str, status: int
) -> None:
    user = _user(role, world)
    raw = _token(user, scope, world[team].team if team else None)
    circuit = world[side].circuit
    before = Override.objects.filter(circuit=circuit).count()
    response = _force(_client(raw), world[side])
    assert response.status_code == status, response.content
    assert Override.objects.filter(circuit=circuit).count() == before + (status == 201)


def test_a_read_token_reads_but_changes_nothing(world: dict[str, Side]) -> None:
    client = _client(_token(_user("global_admin", world), "read"))
    circuit = world["A"].circuit.pk
    assert client.get(f"/api/v1/circuits/{circuit}/").status_code == 200
    assert client.get("/health/circuits").status_code == 200
    config = {"expected_version": 0, "config": {"failure_threshold": 7}, "reason": "x"}
    assert (
        client.post(f"/api/v1/circuits/{circuit}/config/", config, format="json").status_code == 403
    )
    assert client.post(f"/api/v1/alerts/{world['A'].alert.pk}/ack/").status_code == 403
    assert client.post("/api/v1/channels/", {}, format="json").status_code == 403
    assert (
        client.post("/api/v1/teams/", {"name": "x", "slug": "x"}, format="json").status_code == 403
    )


def test_an_operate_token_acknowledges_but_does_not_administer(world: dict[str, Side]) -> None:
    client = _client(_token(_user("global_admin", world), "operate"))
    assert client.post(f"/api/v1/alerts/{world['A'].alert.pk}/ack/").status_code == 200
    service = world["A"].service.pk
    made = client.post(f"/api/v1/services/{service}/tokens/", {"label": "x"}, format="json")
    assert made.status_code == 403
    assert (
        client.post("/api/v1/teams/", {"name": "x", "slug": "x"}, format="json").status_code == 403
    )


def test_a_team_token_sees_its_team_only(world: dict[str, Side]) -> None:
    client = _client(_token(_user("global_viewer", world), "read", world["A"].team))
    names = [c["name"] for c in client.get("/api/v1/circuits/").json()["results"]]
    assert names == [world["A"].circuit.name]
    # The fleet-wide health names every team's circuits: a global read only.
    assert client.get("/health/circuits").status_code == 403


def test_an_expired_token_answers_401_naming_when(operator: User, time_machine: Any) -> None:
    time_machine.move_to("2026-03-01T12:00:00Z", tick=False)
    token, raw = create_api_token(operator, scope="read", days=30)
    assert token.expires_at is not None
    client = _client(raw)
    assert client.get("/api/v1/circuits/").status_code == 200
    time_machine.move_to(token.expires_at - timedelta(seconds=1), tick=False)
    assert client.get("/api/v1/circuits/").status_code == 200
    time_machine.move_to(token.expires_at, tick=False)
    response = client.get("/api/v1/circuits/")
    assert response.status_code == 401
    assert response.json()["field"] == "authorization"
    assert "API token expired at 2026-03-31T12:00:00+00:00" in response.json()["reason"]


def test_a_revoked_token_answers_401(operator: User, admin: User) -> None:
    token, raw = create_api_token(operator, scope="read")
    client = _client(raw)
    assert client.get("/api/v1/circuits/").status_code == 200
    session = APIClient()
    session.force_login(operator)
    assert session.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    response = client.get("/api/v1/circuits/")
    assert response.status_code == 401
    assert "revoked" in response.json()["reason"]
    event = AuditEvent.objects.filter(action="api_token.revoke").order_by("-at", "-id").get()
    assert event.actor_name == "otto" and event.before["prefix"] == token.prefix


def _session(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "role,body,field,reason",
    [
        ("global_operator", {"scope": "root"}, "scope", "not a valid choice"),
        ("global_operator", {"scope": "read", "expires_in_days": 0}, "expires_in_days", "1"),
        ("global_operator", {"scope": "read", "expires_in_days": 366}, "expires_in_days", "1-365"),
        ("global_viewer", {"scope": "operate"}, "scope", "more than your rights"),
        ("global_operator", {"scope": "admin"}, "scope", "more than your rights"),
        ("team_operator", {"scope": "read", "team": "team-bravo"}, "team", "not one of your"),
        ("team_operator", {"scope": "read", "team": "nope"}, "team", "no team 'nope'"),
        ("team_viewer", {"scope": "operate", "team": "team-alpha"}, "scope", "in 'team-alpha'"),
    ],
)
def test_creation_stays_within_the_users_rights(
    world: dict[str, Side], role: str, body: dict[str, Any], field: str, reason: str
) -> None:
    response = _session(_user(role, world)).post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert reason in response.json()["reason"]
    assert not APIToken.objects.exists()


def test_a_created_token_shows_its_secret_once_and_acts_within_its_scope(
    world: dict[str, Side],
) -> None:
    user = _user("team_operator", world)
    session = _session(user)
    created = session.post(
        "/api/v1/tokens/",
        {"scope": "operate", "team": "team-alpha", "expires_in_days": 30, "label": "ci"},
        format="json",
    )
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["token"].startswith("syu_") and data["scope"] == "operate"
    assert data["team"] == "team-alpha" and data["label"] == "ci"
    token = APIToken.objects.get()
    assert token.expires_at is not None
    assert abs((token.expires_at - token.created_at) - timedelta(days=30)) < timedelta(seconds=5)
    assert data["token"] not in session.get("/api/v1/tokens/").content.decode()
    assert _force(_client(data["token"]), world["A"]).status_code == 201
    event = AuditEvent.objects.filter(action="api_token.create").order_by("-at", "-id").get()
    assert event.after["scope"] == "operate" and event.after["team"] == "team-alpha"


def test_the_list_shows_last_use_and_each_user_sees_their_own(
    world: dict[str, Side], viewer: User, admin: User
) -> None:
    mine, raw = create_api_token(viewer, scope="read", days=7)
    create_api_token(admin, scope="admin")
    listed = _session(viewer).get("/api/v1/tokens/").json()["results"]
    assert [t["prefix"] for t in listed] == [mine.prefix]
    assert listed[0]["last_used_at"] is None and listed[0]["expires_at"] is not None
    assert _client(raw).get("/api/v1/circuits/").status_code == 200
    used = APIToken.objects.get(pk=mine.pk).last_used_at
    assert used is not None
    listed = _session(viewer).get("/api/v1/tokens/").json()["results"]
    assert listed[0]["last_used_at"] == used.isoformat().replace("+00:00", "Z")
    # An admin of users sees everyone's; another user's token is out of a viewer's reach.
    assert len(_session(admin).get("/api/v1/tokens/").json()["results"]) == 2
    other = APIToken.objects.get(user=admin)
    assert _session(viewer).delete(f"/api/v1/tokens/{other.pk}/").status_code == 404
    assert APIToken.objects.get(pk=other.pk).revoked_at is None


def test_a_narrow_token_does_not_mint_tokens(world: dict[str, Side], time_machine: Any) -> None:
    user = _user("global_admin", world)
    read = _client(_token(user, "read"))
    assert read.post("/api/v1/tokens/", {"scope": "read"}, format="json").status_code == 403
    team = _client(_token(user, "admin", world["A"].team, days=2))
    response = team.post("/api/v1/tokens/", {"scope": "read"}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "team"
    made = team.post("/api/v1/tokens/", {"scope": "read", "team": "team-alpha"}, format="json")
    assert made.status_code == 201
    # Never outliving the token that made it.
    parent = APIToken.objects.get(team=world["A"].team, scope="admin")
    assert APIToken.objects.get(pk=made.json()["id"]).expires_at == parent.expires_at


def test_a_token_request_reads_its_token_once_and_memberships_once(
    world: dict[str, Side],
) -> None:
    client = _client(_token(_user("team_viewer", world), "read", world["A"].team))
    url = f"/api/v1/circuits/{world['A'].circuit.pk}/override/"
    client.get(url)  # the first use records last_used_at
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    sql = [q["sql"] for q in queries]
    assert len([q for q in sql if "circuits_apitoken" in q]) == 1
    assert len([q for q in sql if "circuits_membership" in q]) == 1


def _run(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return err.getvalue() + out.getvalue()


def test_the_command_creates_a_scoped_team_token(world: dict[str, Side]) -> None:
    _user("team_operator", world)
    output = _run("create_api_token", "team_operator", "--scope", "operate",
                  "--team", "team-alpha", "--days", "30")  # fmt: skip
    token = APIToken.objects.get()
    assert token.scope == "operate" and token.team == world["A"].team
    assert token.expires_at is not None
    assert token.expires_at - timezone.now() > timedelta(days=29, hours=23)
    assert f"scope operate, team team-alpha, expires {token.expires_at.isoformat()}" in output
    assert _force(_client(output.split()[-1]), world["A"]).status_code == 201


@pytest.mark.parametrize(
    "args,message",
    [
        (["--days", "0"], "--days: must be 1-365 days"),
        (["--scope", "admin"], "--scope: 'admin' is more than your rights"),
        (["--team", "team-bravo"], "--team: 'team-bravo' is not one of your teams"),
    ],
)
def test_the_command_refuses_what_the_user_may_not_have(
    world: dict[str, Side], args: list[str], message: str
) -> None:
    _user("team_operator", world)
    with pytest.raises(CommandError, match=message):
        _run("create_api_token", "team_operator", *args)
    assert not APIToken.objects.exists()

"""Config versions compared: the API's diff of any two versions (400 naming a bad
parameter), the version history's choice of two versions on the circuit page and the
diff page, both from the one diff function; team scoping of both."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from controlplane.circuits.config_diff import FieldChange, config_changes
from controlplane.circuits.models import Circuit, Membership, Service, Team
from controlplane.circuits.operations import create_config_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def circuit(service: Service, operator: User) -> Circuit:
    """Three versions: defaults, a lower threshold (otto, "noisy"), a longer timeout."""
    circuit = Circuit.objects.create(service=service, name="payments")
    create_config_version(circuit, {}, expected_version=0, user=None, reason="registered")
    create_config_version(
        circuit, {"failure_threshold": 3}, expected_version=1, user=operator, reason="noisy"
    )
    create_config_version(
        circuit, {"timeout": 45.0, "failure_threshold": 3}, expected_version=2, user=operator,
        reason="slow recovery",
    )  # fmt: skip
    return circuit


def diff_url(circuit: Circuit, query: str) -> str:
    return f"/api/v1/circuits/{circuit.pk}/config/diff/?{query}"


def test_config_changes_lists_the_differing_fields_in_the_librarys_order() -> None:
    old = {"timeout": 30.0, "failure_threshold": 5, "window_type": "count"}
    new = {"timeout": 45.0, "failure_threshold": 5, "window_type": "time", "extra": 1}
    assert config_changes(old, new) == [
        FieldChange("timeout", 30.0, 45.0),
        FieldChange("window_type", "count", "time"),
        FieldChange("extra", None, 1),
    ]
    assert config_changes(new, new) == []


def test_the_api_answers_the_changed_fields_with_both_values_and_each_versions_story(
    viewer_api: APIClient, circuit: Circuit
) -> None:
    response = viewer_api.get(diff_url(circuit, "from=1&to=3"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["changes"] == [
        {"field": "failure_threshold", "old": 5, "new": 3},
        {"field": "timeout", "old": 30.0, "new": 45.0},
    ]
    assert (body["from"]["version"], body["from"]["created_by"], body["from"]["reason"]) == (
        1,
        None,
        "registered",
    )
    assert (body["to"]["version"], body["to"]["created_by"], body["to"]["reason"]) == (
        3,
        "otto",
        "slow recovery",
    )
    assert body["to"]["source"] == "operator"
    # Backwards works too, and a version against itself has no change.
    back = viewer_api.get(diff_url(circuit, "from=3&to=2")).json()["changes"]
    assert back == [{"field": "timeout", "old": 45.0, "new": 30.0}]
    assert viewer_api.get(diff_url(circuit, "from=2&to=2")).json()["changes"] == []


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("to=2", "from", "required"),
        ("from=1", "to", "required"),
        ("from=x&to=2", "from", "must be a version number"),
        ("from=1&to=-2", "to", "must be a version number"),
        ("from=1&to=99999999999", "to", "must be a version number"),
        ("from=9&to=2", "from", "this circuit has no version 9"),
        ("from=1&to=4", "to", "this circuit has no version 4"),
    ],
)
def test_a_bad_parameter_is_400_naming_it(
    viewer_api: APIClient, circuit: Circuit, query: str, field: str, reason: str
) -> None:
    response = viewer_api.get(diff_url(circuit, query))
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field and reason in body["reason"], body


def test_another_teams_circuit_is_404_and_anonymous_is_401(
    circuit: Circuit, api_client_for, service: Service
) -> None:
    team = Team.objects.create(name="a", slug="a")
    other = Team.objects.create(name="b", slug="b")
    service.team = other
    service.save()
    member = User.objects.create_user("tess", password="pw")
    Membership.objects.create(user=member, team=team, role="viewer")
    assert api_client_for(member).get(diff_url(circuit, "from=1&to=2")).status_code == 404
    assert APIClient().get(diff_url(circuit, "from=1&to=2")).status_code == 401
    Membership.objects.create(user=member, team=other, role="viewer")
    assert api_client_for(member).get(diff_url(circuit, "from=1&to=2")).status_code == 200


def test_the_history_offers_two_versions_to_compare(as_viewer: Client, circuit: Circuit) -> None:
    html = as_viewer.get(f"/circuits/{circuit.pk}/").content.decode()
    section = re.search(r'<section class="config-history".*?</section>', html, re.S)
    assert section, "no version history"
    history = section.group(0)
    assert f'action="/circuits/{circuit.pk}/config/diff"' in history
    assert 'method="get"' in history
    # Newest first: v3 is "to", v2 "from" by default.
    assert re.search(r'name="to" value="3"[^>]*checked', history)
    assert re.search(r'name="from" value="2"[^>]*checked', history)
    assert ">noisy<" in history and ">slow recovery<" in history and ">otto<" in history


def test_the_diff_page_shows_the_same_changes_as_the_api(
    as_viewer: Client, viewer_api: APIClient, circuit: Circuit
) -> None:
    response = as_viewer.get(f"/circuits/{circuit.pk}/config/diff?from=1&to=3")
    assert response.status_code == 200
    html = response.content.decode()
    fields = re.findall(r'<tr data-config-field="([a-z_]+)"', html)
    api = viewer_api.get(diff_url(circuit, "from=1&to=3")).json()["changes"]
    assert fields == [c["field"] for c in api] == ["failure_threshold", "timeout"]
    assert "5 failures" in html and "3 failures" in html
    assert "30 seconds" in html and "45 seconds" in html
    assert "2 fields differ" in html
    assert 'data-version="1"' in html and 'data-version="3"' in html
    assert "slow recovery" in html and "registered" in html


def test_the_diff_page_names_a_bad_parameter_with_400(as_viewer: Client, circuit: Circuit) -> None:
    response = as_viewer.get(f"/circuits/{circuit.pk}/config/diff?from=1&to=7")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-error-for="to"' in html and "to: this circuit has no version 7" in html
    same = as_viewer.get(f"/circuits/{circuit.pk}/config/diff?from=2&to=2").content.decode()
    assert "data-no-diff" in same


def test_the_diff_page_is_scoped_to_the_viewers_teams(
    circuit: Circuit, login, service: Service
) -> None:
    team = Team.objects.create(name="a", slug="a")
    service.team = Team.objects.create(name="b", slug="b")
    service.save()
    member = User.objects.create_user("tess", password="pw")
    Membership.objects.create(user=member, team=team, role="viewer")
    page = f"/circuits/{circuit.pk}/config/diff?from=1&to=2"
    assert login(member).get(page).status_code == 404
    assert Client().get(page).status_code == 302  # to the login page

"""The circuit page's canary rollout section: start from the page (errors beside their
fields), both groups side by side, promote and roll back with one button each, for
operators of the circuit's team only, behind CSRF, every step audited."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.circuits.models import AuditEvent, Circuit, Rollout
from controlplane.circuits.rollouts import start_rollout

pytestmark = pytest.mark.django_db


def start_form(circuit: Circuit, **changes: Any) -> dict[str, Any]:
    """The start form as the page posts it: the current thresholds, then changes."""
    form: dict[str, Any] = {
        k: "" if v is None else str(v) for k, v in circuit.current_config.config.items()
    }
    form.update({"percent": "", "auto_rollback_margin": "", "reason": "", **changes})
    return form


def section(html: str) -> str:
    match = re.search(r'<section class="rollout".*?</section>', html, re.S)
    assert match, "no rollout section"
    return match.group(0)


def test_an_operator_starts_a_canary_from_the_page_and_sees_both_groups(
    as_operator: Client, fleet: dict[str, Circuit]
) -> None:
    payments = fleet["payments"]
    page = section(as_operator.get(f"/circuits/{payments.pk}/").content.decode())
    assert "No rollout runs" in page and 'id="canary-start"' in page
    assert "csrfmiddlewaretoken" in page
    form = start_form(payments, failure_threshold="3", instances=["web-2"], reason="try 3")
    response = as_operator.post(f"/circuits/{payments.pk}/rollouts/start", form)
    assert response.status_code == 302
    assert response["Location"].endswith(f"/circuits/{payments.pk}/#rollout")
    rollout = Rollout.objects.get()
    assert rollout.select == {"instances": ["web-2"]}
    assert rollout.to_version.config["failure_threshold"] == 3
    assert AuditEvent.objects.filter(action="rollout.start", actor_name="otto").count() == 1
    page = section(as_operator.get(f"/circuits/{payments.pk}/").content.decode())
    assert f"<strong>v{rollout.to_version.version}</strong> runs on 1 named instance: web-2" in page
    assert 'id="rollout-promote"' in page and 'id="rollout-rollback"' in page
    assert re.search(r'data-group="canary" data-field="instances">1 / 0<', page)
    assert re.search(r'data-group="baseline" data-field="instances">2 / 0<', page)
    groups = as_operator.get(f"/circuits/{payments.pk}/rollouts/groups")
    assert groups.status_code == 200
    assert "data-rollout-groups" in groups.content.decode()


def test_bad_start_input_answers_the_form_with_the_error_beside_its_field(
    as_operator: Client, fleet: dict[str, Circuit]
) -> None:
    payments = fleet["payments"]
    form = start_form(payments, failure_threshold="3", percent="100")
    response = as_operator.post(f"/circuits/{payments.pk}/rollouts/start", form)
    assert response.status_code == 400
    html = response.content.decode()
    assert re.search(r'data-error-for="percent">must be an integer from 1 to 99', html)
    assert 'value="100"' in html
    form = start_form(payments, failure_threshold="0", percent="10")
    html = as_operator.post(f"/circuits/{payments.pk}/rollouts/start", form).content.decode()
    assert 'data-error-for="failure_threshold"' in html
    assert not Rollout.objects.exists()


def test_promote_and_roll_back_are_one_button_each(
    as_operator: Client, fleet: dict[str, Circuit], operator: User
) -> None:
    payments = fleet["payments"]
    first = start_rollout(payments, user=operator, config={"failure_threshold": 3}, percent=50)
    response = as_operator.post(f"/circuits/{payments.pk}/rollouts/{first.pk}/rollback")
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.state == "rolled_back"
    assert as_operator.get(f"/circuits/{payments.pk}/rollouts/groups").status_code == 204
    second = start_rollout(payments, user=operator, config={"failure_threshold": 4}, percent=50)
    assert (
        as_operator.post(f"/circuits/{payments.pk}/rollouts/{second.pk}/promote").status_code == 302
    )
    payments.refresh_from_db()
    assert payments.current_config_id == second.to_version_id
    again = as_operator.post(f"/circuits/{payments.pk}/rollouts/{second.pk}/rollback")
    assert again.status_code == 409
    assert "has ended" in again.content.decode()
    actions = list(
        AuditEvent.objects.filter(action__startswith="rollout.")
        .order_by("at", "id")
        .values_list("action", "actor_name")
    )
    assert actions == [
        ("rollout.start", "otto"),
        ("rollout.rollback", "otto"),
        ("rollout.start", "otto"),
        ("rollout.promote", "otto"),
    ]
    page = section(as_operator.get(f"/circuits/{payments.pk}/").content.decode())
    assert "Earlier rollouts" in page and "promoted" in page and "rolled back" in page


def test_a_viewer_sees_the_groups_but_no_button_and_cannot_post(
    as_viewer: Client, fleet: dict[str, Circuit], operator: User
) -> None:
    payments = fleet["payments"]
    rollout = start_rollout(payments, user=operator, config={"failure_threshold": 3}, percent=50)
    page = section(as_viewer.get(f"/circuits/{payments.pk}/").content.decode())
    assert "data-rollout-groups" in page
    assert "rollout-promote" not in page and "rollout-rollback" not in page
    base = f"/circuits/{payments.pk}/rollouts"
    assert as_viewer.post(f"{base}/{rollout.pk}/promote").status_code == 403
    assert as_viewer.post(f"{base}/{rollout.pk}/rollback").status_code == 403
    form = start_form(payments, failure_threshold="5", percent="10")
    assert as_viewer.post(f"{base}/start", form).status_code == 403
    rollout.refresh_from_db()
    assert rollout.state == "active"


def test_the_buttons_need_csrf(operator: User, fleet: dict[str, Circuit]) -> None:
    payments = fleet["payments"]
    rollout = start_rollout(payments, user=operator, config={"failure_threshold": 3}, percent=50)
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    base = f"/circuits/{payments.pk}/rollouts"
    assert client.post(f"{base}/{rollout.pk}/rollback").status_code == 403
    assert client.post(f"{base}/start", start_form(payments, percent="5")).status_code == 403
    rollout.refresh_from_db()
    assert rollout.state == "active"


def test_signed_out_the_buttons_lead_to_the_login_page(
    client: Client, fleet: dict[str, Circuit], operator: User
) -> None:
    payments = fleet["payments"]
    rollout = start_rollout(payments, user=operator, config={"failure_threshold": 3}, percent=50)
    response = client.post(f"/circuits/{payments.pk}/rollouts/{rollout.pk}/rollback")
    assert response.status_code == 302 and "/login/" in response["Location"]
    rollout.refresh_from_db()
    assert rollout.state == "active"


def test_after_a_rollback_the_config_form_names_the_next_free_version(
    as_operator: Client, fleet: dict[str, Circuit], operator: User
) -> None:
    payments = fleet["payments"]
    rollout = start_rollout(payments, user=operator, config={"failure_threshold": 3}, percent=50)
    as_operator.post(f"/circuits/{payments.pk}/rollouts/{rollout.pk}/rollback")
    html = as_operator.get(f"/circuits/{payments.pk}/").content.decode()
    assert "Config v1" in html
    assert "Review the change before saving as v3</button>" in html

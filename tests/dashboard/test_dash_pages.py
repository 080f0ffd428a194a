"""Dashboard pages: login, every page for anonymous/viewer/operator, controls, writes."""

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.circuits.models import AuditEvent, Circuit, ConfigVersion, Override
from controlplane.circuits.operations import force_circuit

pytestmark = pytest.mark.django_db

PAGES = ["/", "/services/", "/instances/", "/audit/", "/alerts/"]


def tile(html: str, key: str) -> str:
    match = re.search(rf'<a class="tile"[^>]*data-circuit="{re.escape(key)}".*?</a>', html, re.S)
    assert match, f"no tile {key}"
    return match.group(0)


# ------------------------------------------------------------------ login


@pytest.mark.parametrize("path", [*PAGES, "/circuits/1/"])
def test_anonymous_is_sent_to_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_login_with_username_and_password_lands_on_the_overview(viewer: User) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    assert b'name="username"' in page.content and b'name="password"' in page.content
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/login/",
        {"username": "vera", "password": "vera-pw-123!", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_login_without_csrf_token_is_refused(viewer: User) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "vera", "password": "vera-pw-123!"})
    assert response.status_code == 403


def test_logout_is_a_post_and_ends_the_session(as_viewer: Client) -> None:
    assert as_viewer.post("/logout/").status_code == 302
    assert as_viewer.get("/").status_code == 302


def test_a_user_without_a_role_is_forbidden(login: Any) -> None:
    nobody = User.objects.create_user("nobody", password="x-pw-123!")
    client = login(nobody)
    for path in PAGES:
        assert client.get(path).status_code == 403, path


# ------------------------------------------------------------------ overview


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_a_viewer(as_viewer: Client, fleet: Any, path: str) -> None:
    response = as_viewer.get(path)
    assert response.status_code == 200
    assert b"Alerts" in response.content  # the navigation's place for alerts


def test_overview_tiles_show_fleet_state_counts_and_figures(as_viewer: Client, fleet: Any):
    html = as_viewer.get("/").content.decode()
    payments = tile(html, "checkout/payments")
    assert 'data-state="open"' in payments
    assert ">open<" in payments  # a text label, not only a colour
    assert "open on 1 of 3" in payments
    assert f'href="/circuits/{fleet["payments"].pk}/"' in payments
    assert "fail <b" in payments and "%" in payments
    assert re.search(r'<polyline data-field="spark" points="[\d.]+,[\d.]+ ', payments)
    assert re.search(r'data-probe-at="\d{4}-', payments)  # open: the next probe is known
    db = tile(html, "checkout/db")
    assert 'data-state="closed"' in db and "closed on 3 of 3" in db
    assert html.index("checkout/payments") < html.index("checkout/db")  # worst first


def test_overview_labels_forced_states(as_viewer: Client, fleet: Any, operator: User):
    force_circuit(fleet["db"], "forced_closed", reason="maintenance", user=operator)
    db = tile(as_viewer.get("/").content.decode(), "checkout/db")
    assert 'data-state="forced_closed"' in db and ">forced closed<" in db


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("state=open", ["checkout/payments"], ["checkout/db"]),
        ("state=closed", ["checkout/db"], ["checkout/payments"]),
        ("name=pay", ["checkout/payments"], ["checkout/db"]),
        ("service=billing", [], ["checkout/db", "checkout/payments"]),
        ("service=checkout&sort=name", ["checkout/db", "checkout/payments"], []),
    ],
)
def test_overview_filters_live_in_the_url(as_viewer, fleet, query, shown, hidden) -> None:
    html = as_viewer.get(f"/?{query}").content.decode()
    for key in shown:
        assert f'data-circuit="{key}"' in html
    for key in hidden:
        assert f'data-circuit="{key}"' not in html


@pytest.mark.parametrize(("sort", "first"), [("name", "db"), ("worst", "payments")])
def test_overview_sorts(as_viewer: Client, fleet: Any, sort: str, first: str) -> None:
    body = as_viewer.get(f"/?sort={sort}&format=json").json()
    assert body["tiles"][0]["name"] == first


def test_overview_json_is_the_resync_snapshot(as_viewer: Client, fleet: Any) -> None:
    body = as_viewer.get("/?format=json").json()
    by_key = {t["key"]: t for t in body["tiles"]}
    assert by_key["checkout/payments"]["state"] == "open"
    assert by_key["checkout/payments"]["summary"] == "open on 1 of 3"
    ids = as_viewer.get(f"/?format=json&ids={fleet['db'].pk}").json()
    assert [t["key"] for t in ids["tiles"]] == ["checkout/db"]


def test_bad_filter_values_fall_back_instead_of_failing(as_viewer: Client, fleet: Any):
    assert as_viewer.get("/?state=nonsense&sort=bogus&page=x").status_code == 200


def test_overview_query_count_does_not_grow_with_circuits(
    as_viewer: Client, fleet: Any, post_sync: Any, sync_body: Any, django_assert_max_num_queries
) -> None:
    as_viewer.get("/")  # warm the session and permission caches of the first request
    # session, user, 2 x permissions, services; count, page, overrides, sparklines;
    # savepoint, SET LOCAL jit, release; the navigation's firing-alerts badge.
    with django_assert_max_num_queries(13):
        as_viewer.get("/")
    body = sync_body(
        instance={"id": "web-9"}, breakers=[{"name": f"c{i}", "state": "open"} for i in range(60)]
    )
    assert post_sync(body).status_code == 200
    with django_assert_max_num_queries(13):
        html = as_viewer.get("/").content.decode()
    # Each circuit's tile (the blank one of the live additions' <template> links nowhere).
    assert html.count('class="tile" href="/circuits/') == 62


# ------------------------------------------------------------------ circuit page


def test_circuit_page_shows_history_instances_drift_config_and_audit(
    as_viewer: Client, fleet: Any, operator: User
) -> None:
    payments = fleet["payments"]
    force_circuit(payments, "forced_open", reason="bad deploy", user=operator)
    html = as_viewer.get(f"/circuits/{payments.pk}/").content.decode()
    assert '<svg class="timeline"' in html and '<rect x="' in html
    assert '<svg class="rate-chart"' in html and "<polyline points=" in html
    for i in (1, 2, 3):
        assert f'data-instance="web-{i}"' in html
    assert "drift: current is v" in html  # the agents run v0 while v1 is current
    assert 'name="failure_threshold"' in html
    assert "bad deploy" in html and "otto" in html  # override + audit trail


def test_viewer_sees_no_controls(as_viewer: Client, fleet: Any) -> None:
    html = as_viewer.get(f"/circuits/{fleet['payments'].pk}/").content.decode()
    assert "Force open" not in html and "Force closed" not in html
    assert "Release" not in html and "saving as v" not in html


def test_operator_sees_controls(as_operator: Client, fleet: Any) -> None:
    html = as_operator.get(f"/circuits/{fleet['payments'].pk}/").content.decode()
    for label in ("Force open", "Force closed", "Release", "before saving as v2"):
        assert label in html
    assert "csrfmiddlewaretoken" in html


def test_unknown_circuit_is_404(as_viewer: Client) -> None:
    assert as_viewer.get("/circuits/999999/").status_code == 404


# ------------------------------------------------------------------ writes


def test_viewer_writes_are_refused(as_viewer: Client, fleet: Any) -> None:
    pk = fleet["payments"].pk
    force = {"action": "forced_open", "reason": "x", "confirm": "1"}
    assert as_viewer.post(f"/circuits/{pk}/override", force).status_code == 403
    config = {"expected_version": "1", "failure_threshold": "9"}
    assert as_viewer.post(f"/circuits/{pk}/config", config).status_code == 403
    assert not Override.objects.exists()
    assert ConfigVersion.objects.filter(circuit_id=pk).count() == 1


def test_anonymous_writes_go_to_login(client: Client, fleet: Any) -> None:
    response = client.post(f"/circuits/{fleet['payments'].pk}/override", {"action": "release"})
    assert response.status_code == 302 and not Override.objects.exists()


def test_force_asks_for_confirmation_then_forces_and_audits(as_operator, fleet) -> None:
    pk = fleet["payments"].pk
    form = {"action": "forced_closed", "reason": "failover done", "expires_in_minutes": "30"}
    confirm = as_operator.post(f"/circuits/{pk}/override", form)
    assert confirm.status_code == 200 and b"Confirm: Force closed" in confirm.content
    assert not Override.objects.exists()
    done = as_operator.post(f"/circuits/{pk}/override", {**form, "confirm": "1"})
    assert done.status_code == 302
    override = Override.objects.get()
    assert (override.state, override.reason, override.created_by.username) == (
        "forced_closed",
        "failover done",
        "otto",
    )
    assert override.expires_at is not None
    event = AuditEvent.objects.get(action="override.force")
    assert event.actor_name == "otto" and event.reason == "failover done"
    tile_json = as_operator.get(f"/?format=json&ids={pk}").json()["tiles"][0]
    assert tile_json["state"] == "forced_closed"


def test_release_ends_the_override(as_operator: Client, fleet: Any, operator: User) -> None:
    payments = fleet["payments"]
    force_circuit(payments, "forced_open", reason="x", user=operator)
    form = {"action": "release", "reason": "fixed", "confirm": "1"}
    assert as_operator.post(f"/circuits/{payments.pk}/override", form).status_code == 302
    assert Override.objects.get().end_reason == "released"
    assert AuditEvent.objects.filter(action="override.release", reason="fixed").exists()


def test_force_without_reason_is_refused_beside_the_field(as_operator, fleet) -> None:
    pk = fleet["payments"].pk
    response = as_operator.post(f"/circuits/{pk}/override", {"action": "forced_open"})
    assert response.status_code == 400
    assert b'data-error-for="reason"' in response.content
    assert not Override.objects.exists()


def test_release_without_override_says_so(as_operator: Client, fleet: Any) -> None:
    pk = fleet["payments"].pk
    form = {"action": "release", "confirm": "1"}
    response = as_operator.post(f"/circuits/{pk}/override", form)
    assert response.status_code == 400 and b"no override in force" in response.content


def test_override_form_needs_csrf(operator: User, fleet: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    form = {"action": "forced_open", "reason": "x", "confirm": "1"}
    assert client.post(f"/circuits/{fleet['payments'].pk}/override", form).status_code == 403
    assert not Override.objects.exists()


def _config_form(circuit: Circuit, **changes: str) -> dict[str, str]:
    current = circuit.config_versions.order_by("-version").first()
    form = {k: "" if v is None else str(v) for k, v in current.config.items()}
    form.update(expected_version=str(current.version), reason="tune", **changes)
    return form


def test_config_edit_creates_a_version_with_who_and_why(as_operator, fleet) -> None:
    payments = fleet["payments"]
    form = _config_form(payments, failure_threshold="9", confirm="1")
    response = as_operator.post(f"/circuits/{payments.pk}/config", form)
    assert response.status_code == 302
    new = ConfigVersion.objects.get(circuit=payments, version=2)
    assert new.config["failure_threshold"] == 9 and new.created_by.username == "otto"
    html = as_operator.get(f"/circuits/{payments.pk}/").content.decode()
    assert "v2" in html and "tune" in html
    assert AuditEvent.objects.filter(action="config.create", actor_name="otto").exists()


def test_config_errors_come_from_the_library_and_sit_beside_their_fields(as_operator, fleet):
    payments = fleet["payments"]
    form = _config_form(
        payments, failure_threshold="0", failure_rate_threshold="1.5", timeout="soon"
    )
    response = as_operator.post(f"/circuits/{payments.pk}/config", form)
    assert response.status_code == 400
    html = response.content.decode()
    assert re.search(r'data-error-for="timeout">must be a number', html)
    form["timeout"] = "30"
    html = as_operator.post(f"/circuits/{payments.pk}/config", form).content.decode()
    assert re.search(r'data-error-for="failure_threshold">must be an integer between 1', html)
    assert re.search(r'data-error-for="failure_rate_threshold">must be a number greater', html)
    assert ConfigVersion.objects.filter(circuit=payments).count() == 1


def test_stale_config_edit_is_a_409_showing_the_newer_version(as_operator, fleet) -> None:
    payments = fleet["payments"]
    stale = _config_form(payments, failure_threshold="7")
    assert (
        as_operator.post(
            f"/circuits/{payments.pk}/config",
            _config_form(payments, failure_threshold="4", confirm="1"),
        ).status_code
        == 302
    )
    response = as_operator.post(f"/circuits/{payments.pk}/config", stale)
    assert response.status_code == 409
    html = response.content.decode()
    assert "version 2 is now current" in html
    assert 'name="expected_version" value="2"' in html
    assert ConfigVersion.objects.filter(circuit=payments).count() == 2


# ------------------------------------------------------------------ other pages


def test_instances_page_marks_online_stale_and_gone(as_viewer: Client, fleet: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from controlplane.circuits.models import Instance

    now = timezone.now()
    Instance.objects.filter(instance_id="web-2").update(last_seen=now - timedelta(minutes=1))
    Instance.objects.filter(instance_id="web-3").update(last_seen=now - timedelta(hours=2))
    html = as_viewer.get("/instances/").content.decode()
    assert re.search(r'data-instance="web-1" data-status="online"', html)
    assert re.search(r'data-instance="web-2" data-status="stale"', html)
    assert re.search(r'data-instance="web-3" data-status="gone"', html)


def test_services_and_audit_pages_list_rows(as_viewer: Client, fleet: Any, operator) -> None:
    force_circuit(fleet["db"], "forced_open", reason="drill", user=operator)
    services = as_viewer.get("/services/").content.decode()
    assert 'data-service="checkout"' in services and "3 / 3" in services
    audit = as_viewer.get("/audit/").content.decode()
    assert "drill" in audit and "checkout/db" in audit


def test_static_files_are_served_by_whitenoise(as_viewer: Client) -> None:
    for name in ("dashboard/live.js", "dashboard/dashboard.css"):
        response = as_viewer.get(f"/static/{name}")
        assert response.status_code == 200, name

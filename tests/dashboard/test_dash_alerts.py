"""The dashboard's alerts page: what each role sees, filters in the URL, and the writes
(acknowledge, silence, end a silence) through the alerts app's operations, audited."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.alerts.evaluate import evaluate
from controlplane.alerts.models import Alert, AlertRule, Silence
from controlplane.circuits.models import AuditEvent, Circuit
from controlplane.circuits.operations import force_circuit

pytestmark = pytest.mark.django_db


@pytest.fixture
def rule(fleet: dict[str, Circuit]) -> AlertRule:
    return AlertRule.objects.create(
        name="payments open", kind="open_too_long", params={"duration": 10}, severity="critical"
    )


@pytest.fixture
def firing(rule: AlertRule) -> Alert:
    """checkout/payments has been open for 30 s: the rule fires on the first evaluation."""
    evaluate()
    return Alert.objects.get(rule=rule)


def row(html: str, alert: Alert) -> str:
    match = re.search(rf'<tr data-alert-id="{alert.pk}".*?</tr>', html, re.S)
    assert match, f"no row for alert {alert.pk}"
    return match.group(0)


def make_alert(rule: AlertRule, circuit: Circuit, status: str, **fields: Any) -> Alert:
    now = timezone.now()
    return Alert.objects.create(
        rule=rule,
        circuit=circuit,
        status=status,
        started_at=now - timedelta(minutes=5),
        fired_at=now if status != "pending" else None,
        resolved_at=now if status == "resolved" else None,
        created_at=now,
        **fields,
    )


def csrf_client(user: User, path: str = "/alerts/") -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(path)
    return client, client.cookies["csrftoken"].value


# ------------------------------------------------------------------ who sees what


def test_a_firing_alert_is_listed_with_its_details(as_viewer: Client, firing: Alert) -> None:
    assert firing.status == "firing"
    html = as_viewer.get("/alerts/").content.decode()
    r = row(html, firing)
    assert 'data-alert-status="firing">firing<' in r  # a text label beside the colour
    assert ">critical<" in r and ">payments open<" in r and "circuit open too long" in r
    # The circuit opens at the alert's window (from 15 min before it started, up to now).
    window = f'href="/circuits/{firing.circuit_id}/?{firing.window_query}#traffic"'
    assert "from=" in window and "to=" not in window
    assert re.search(re.escape(window) + r"[^>]*>checkout/payments<", r), r
    # Started and fired: relative words, the exact time in the title and datetime.
    assert r.count(f'datetime="{timezone.now().strftime("%Y-%m-%d")}T') >= 2
    assert r.count(" ago</time>") + r.count(">just now</time>") >= 2
    assert 'data-field="ack">no</td>' in r
    assert "1 firing</span>" in html  # the navigation badge


def test_a_viewer_sees_no_controls(as_viewer: Client, firing: Alert, operator: User) -> None:
    Silence.objects.create(
        circuit=firing.circuit,
        starts_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
        reason="deploy",
        created_by=operator,
    )
    html = as_viewer.get("/alerts/").content.decode()
    assert "deploy" in html  # the active silence is listed
    for label in (
        ">Acknowledge<",
        "Silence</a>",
        "End silence",
        ">Actions</th>",
        '<form method="post" action="/alerts',
    ):
        assert label not in html, label


def test_an_operator_sees_acknowledge_silence_and_end_silence(
    as_operator: Client, firing: Alert, operator: User
) -> None:
    Silence.objects.create(
        rule=firing.rule,
        starts_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
        reason="known",
        created_by=operator,
    )
    html = as_operator.get("/alerts/").content.decode()
    r = row(html, firing)
    assert f'action="/alerts/{firing.pk}/ack"' in r and ">Acknowledge<" in r
    assert f'href="/alerts/silence?alert={firing.pk}"' in r
    assert ">End silence<" in html
    assert 'data-field="silenced">silenced<' in r  # the rule's silence mutes it


def test_a_user_without_a_role_is_forbidden_everywhere(login: Any, firing: Alert) -> None:
    nobody = User.objects.create_user("nobody", password="x-pw-123!")
    client = login(nobody)
    assert client.get("/alerts/").status_code == 403
    assert client.get(f"/alerts/silence?alert={firing.pk}").status_code == 403
    assert client.post(f"/alerts/{firing.pk}/ack").status_code == 403


@pytest.mark.parametrize("path", ["/alerts/1/ack", "/alerts/silence", "/silences/1/end"])
def test_anonymous_writes_are_sent_to_the_login_page(client: Client, path: str) -> None:
    response = client.post(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_viewer_cannot_write(as_viewer: Client, firing: Alert, operator: User) -> None:
    silence = Silence.objects.create(
        circuit=firing.circuit,
        starts_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
        reason="deploy",
    )
    assert as_viewer.post(f"/alerts/{firing.pk}/ack").status_code == 403
    assert as_viewer.get(f"/alerts/silence?alert={firing.pk}").status_code == 403
    body = {"alert": firing.pk, "match": "circuit", "reason": "x", "expires_in_minutes": 5}
    assert as_viewer.post("/alerts/silence", {**body, "confirm": "1"}).status_code == 403
    assert as_viewer.post(f"/silences/{silence.pk}/end").status_code == 403
    firing.refresh_from_db()
    silence.refresh_from_db()
    assert firing.acknowledged_at is None and Silence.objects.count() == 1
    assert silence.expires_at > timezone.now()
    assert not AuditEvent.objects.filter(action__startswith="alert").exists()
    assert not AuditEvent.objects.filter(action__startswith="silence").exists()


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("", {"fire", "pend", "done", "acked"}),
        ("status=firing", {"fire", "acked"}),
        ("status=pending", {"pend"}),
        ("status=resolved", {"done"}),
        ("status=open", {"fire", "pend", "acked"}),
        ("acknowledged=yes", {"acked"}),
        ("acknowledged=no", {"fire", "pend", "done"}),
        ("silenced=yes", {"pend"}),
        ("silenced=no", {"fire", "done", "acked"}),
        ("severity=info", {"done"}),
        ("service=billing", set()),
        ("service=checkout&status=firing&acknowledged=no", {"fire"}),
        ("status=bogus&severity=nonsense", {"fire", "pend", "done", "acked"}),
    ],
)
def test_filters_live_in_the_url(
    as_viewer: Client, fleet: dict[str, Circuit], operator: User, query: str, shown: set[str]
) -> None:
    rules = {
        name: AlertRule.objects.create(
            name=name, kind="open_too_long", severity="info" if name == "done" else "warning"
        )
        for name in ("fire", "pend", "done", "acked")
    }
    alerts = {
        "fire": make_alert(rules["fire"], fleet["payments"], "firing"),
        "pend": make_alert(rules["pend"], fleet["db"], "pending"),
        "done": make_alert(rules["done"], fleet["payments"], "resolved"),
        "acked": make_alert(
            rules["acked"],
            fleet["db"],
            "firing",
            acknowledged_at=timezone.now(),
            acknowledged_by=operator,
        ),
    }
    Silence.objects.create(
        rule=rules["pend"],
        starts_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
        reason="r",
    )
    html = as_viewer.get(f"/alerts/?{query}").content.decode()
    listed = {name for name, a in alerts.items() if f'data-alert-id="{a.pk}"' in html}
    assert listed == shown
    assert f"{len(shown)} alert" in html


def test_the_forced_label_is_shown(as_viewer: Client, rule: AlertRule, operator: User) -> None:
    payments = Circuit.objects.get(name="payments")
    force_circuit(payments, "forced_open", reason="drill", user=operator)
    evaluate(now=timezone.now() + timedelta(seconds=20))
    alert = Alert.objects.get(rule=rule)
    assert alert.forced
    assert '<span class="tag">forced</span>' in row(
        as_viewer.get("/alerts/").content.decode(), alert
    )


def test_query_count_does_not_grow_with_alerts(
    as_viewer: Client, fleet: dict[str, Circuit], operator: User, django_assert_num_queries: Any
) -> None:
    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            r = AlertRule.objects.create(name=f"rule {i}", kind="failure_rate")
            make_alert(
                r,
                fleet["payments"],
                "firing",
                acknowledged_by=operator,
                acknowledged_at=timezone.now(),
                forced=bool(i % 2),
            )
            Silence.objects.create(
                rule=r,
                starts_at=timezone.now(),
                expires_at=timezone.now() + timedelta(hours=1),
                reason="r",
                created_by=operator,
            )

    add(1, 0)
    as_viewer.get("/alerts/")  # warm the session and permission caches
    with CaptureQueriesContext(connection) as one:
        assert as_viewer.get("/alerts/").status_code == 200
    add(40, 1)
    with django_assert_num_queries(len(one.captured_queries)):
        html = as_viewer.get("/alerts/").content.decode()
    assert html.count("<tr data-alert-id=") == 41 and html.count("<tr data-silence=") == 41


def test_the_json_refresh_carries_rows_counts_and_the_badge(
    as_operator: Client, firing: Alert
) -> None:
    body = as_operator.get("/alerts/?status=firing&format=json").json()
    assert body["count"] == 1 and body["firing"] == 1
    assert f'data-alert-id="{firing.pk}"' in body["rows"] and "csrfmiddlewaretoken" in body["rows"]
    assert as_operator.get("/alerts/?status=resolved&format=json").json()["count"] == 0
    assert as_operator.get("/alerts/?format=json&only=count").json() == {"firing": 1}


def test_the_circuit_page_shows_its_open_alerts(
    as_operator: Client, firing: Alert, fleet: dict[str, Circuit]
) -> None:
    other = AlertRule.objects.create(name="old one", kind="failure_rate")
    resolved = make_alert(other, fleet["payments"], "resolved")
    html = as_operator.get(f"/circuits/{fleet['payments'].pk}/").content.decode()
    section = html[html.index("Open alerts") : html.index("State timeline")]
    assert f'data-alert-id="{firing.pk}"' in section and ">payments open" in section
    assert f'data-alert-id="{resolved.pk}"' not in section
    assert ">Acknowledge<" in section
    assert f'name="next" value="/circuits/{fleet["payments"].pk}/"' in section
    db_html = as_operator.get(f"/circuits/{fleet['db'].pk}/").content.decode()
    assert "No open alert on this circuit." in db_html


# ------------------------------------------------------------------ acknowledge


def test_an_operator_acknowledges_an_alert_audited(
    as_operator: Client, firing: Alert, operator: User
) -> None:
    response = as_operator.post(f"/alerts/{firing.pk}/ack", {"next_query": "status=firing"})
    assert response.status_code == 302 and response["Location"] == "/alerts/?status=firing"
    firing.refresh_from_db()
    assert firing.acknowledged_by == operator and firing.acknowledged_at is not None
    event = AuditEvent.objects.get(action="alert.acknowledge")
    assert event.actor == operator and event.target_id == str(firing.pk)
    r = row(as_operator.get("/alerts/").content.decode(), firing)
    assert "by otto at" in r and ">Acknowledge<" not in r


@pytest.mark.parametrize(
    ("next_url", "location"),
    [("/circuits/7/", "/circuits/7/"), ("https://evil.example/", "/alerts/")],
)
def test_acknowledge_goes_back_to_a_local_page_only(
    as_operator: Client, firing: Alert, next_url: str, location: str
) -> None:
    response = as_operator.post(f"/alerts/{firing.pk}/ack", {"next": next_url})
    assert response.status_code == 302 and response["Location"] == location


def test_acknowledging_a_resolved_alert_is_refused(
    as_operator: Client, fleet: dict[str, Circuit]
) -> None:
    alert = make_alert(
        AlertRule.objects.create(name="r", kind="failure_rate"), fleet["db"], "resolved"
    )
    response = as_operator.post(f"/alerts/{alert.pk}/ack")
    assert response.status_code == 400
    assert b"a resolved alert cannot be acknowledged" in response.content
    assert not AuditEvent.objects.filter(action="alert.acknowledge").exists()


def test_acknowledge_needs_the_csrf_token(operator: User, firing: Alert) -> None:
    client, token = csrf_client(operator)
    assert client.post(f"/alerts/{firing.pk}/ack").status_code == 403
    firing.refresh_from_db()
    assert firing.acknowledged_at is None
    response = client.post(f"/alerts/{firing.pk}/ack", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    firing.refresh_from_db()
    assert firing.acknowledged_by == operator


# ------------------------------------------------------------------ silences


@pytest.mark.parametrize(
    ("match", "field", "label"),
    [
        ("circuit", "circuit_id", "circuit checkout/payments"),
        ("service", "service_id", "service checkout"),
        ("rule", "rule_id", "rule payments open"),
    ],
)
def test_an_operator_silences_after_a_confirmation(
    as_operator: Client, firing: Alert, operator: User, match: str, field: str, label: str
) -> None:
    form = as_operator.get(f"/alerts/silence?alert={firing.pk}")
    assert form.status_code == 200 and b'name="reason"' in form.content
    body = {"alert": firing.pk, "match": match, "reason": "known outage", "expires_in_minutes": 30}
    confirm = as_operator.post("/alerts/silence", body)
    assert confirm.status_code == 200
    assert f"Confirm: silence {label}".encode() in confirm.content
    assert not Silence.objects.exists()  # nothing before the confirmation

    response = as_operator.post("/alerts/silence", {**body, "confirm": "1"})
    assert response.status_code == 302 and response["Location"] == "/alerts/"
    silence = Silence.objects.get()
    expected = {
        "circuit_id": firing.circuit_id,
        "service_id": firing.circuit.service_id,
        "rule_id": firing.rule_id,
    }[field]
    assert getattr(silence, field) == expected
    others = {"circuit_id", "service_id", "rule_id"} - {field}
    assert all(getattr(silence, f) is None for f in others)
    assert silence.created_by == operator and silence.reason == "known outage"
    assert timedelta(minutes=29) < silence.expires_at - timezone.now() <= timedelta(minutes=30)
    event = AuditEvent.objects.get(action="silence.create")
    assert event.actor == operator and event.after["reason"] == "known outage"
    html = as_operator.get("/alerts/?silenced=yes").content.decode()
    assert f'data-alert-id="{firing.pk}"' in html and f'data-silence="{silence.pk}"' in html


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"reason": "  "}, "reason", "A reason is required"),
        ({"expires_in_minutes": "0"}, "expires_in_minutes", "greater than or equal to 1"),
        ({"expires_in_minutes": str(91 * 24 * 60)}, "expires_in_minutes", "less than or equal"),
        ({"match": "everything"}, "match", "Select a valid choice"),
    ],
)
def test_a_bad_silence_shows_the_error_beside_its_field(
    as_operator: Client, firing: Alert, changes: dict[str, str], field: str, message: str
) -> None:
    body = {"alert": firing.pk, "match": "circuit", "reason": "r", "expires_in_minutes": 30}
    response = as_operator.post("/alerts/silence", {**body, **changes, "confirm": "1"})
    assert response.status_code == 400
    error = re.search(rf'data-error-for="{field}">([^<]*)<', response.content.decode())
    assert error and message in error.group(1)
    assert not Silence.objects.exists() and not AuditEvent.objects.exists()


def test_a_silence_for_a_missing_alert(as_operator: Client) -> None:
    assert as_operator.get("/alerts/silence?alert=999999").status_code == 404
    assert as_operator.get("/alerts/silence?alert=abc").status_code == 400


def test_silence_needs_the_csrf_token(operator: User, firing: Alert) -> None:
    client, token = csrf_client(operator, f"/alerts/silence?alert={firing.pk}")
    body = {
        "alert": firing.pk, "match": "circuit", "reason": "r", "expires_in_minutes": 5,
        "confirm": "1",
    }  # fmt: skip
    assert client.post("/alerts/silence", body).status_code == 403
    assert not Silence.objects.exists()
    assert client.post("/alerts/silence", {**body, "csrfmiddlewaretoken": token}).status_code == 302
    assert Silence.objects.count() == 1


def test_an_operator_ends_a_silence_audited(
    as_operator: Client, firing: Alert, operator: User
) -> None:
    silence = Silence.objects.create(
        circuit=firing.circuit,
        starts_at=timezone.now() - timedelta(minutes=1),
        expires_at=timezone.now() + timedelta(hours=1),
        reason="deploy",
    )
    client, token = csrf_client(operator)
    assert client.post(f"/silences/{silence.pk}/end").status_code == 403  # no token
    response = client.post(f"/silences/{silence.pk}/end", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    silence.refresh_from_db()
    assert silence.expires_at <= timezone.now()
    event = AuditEvent.objects.get(action="silence.expire")
    assert event.actor == operator
    html = as_operator.get("/alerts/").content.decode()
    assert f'data-silence="{silence.pk}"' not in html and "No active silence." in html

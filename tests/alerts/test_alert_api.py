"""The alerts API: wire shapes, validation (400 naming the field), permissions per
role, redacted secrets, audit events, acknowledge and silences."""

from datetime import timedelta
from typing import Any

import pytest
from alert_helpers import T0, WEBHOOK_SECRET
from django.utils import timezone

from controlplane.alerts.models import Alert, AlertRule, Channel, Silence
from controlplane.circuits.models import AuditEvent

pytestmark = pytest.mark.django_db

WEBHOOK = {
    "name": "ops",
    "kind": "webhook",
    "config": {"url": "https://hooks.example.com/T1/abc", "secret": WEBHOOK_SECRET},
}


def error_fields(response: Any) -> set[str]:
    """The top-level fields named in an error body (``params.threshold`` -> ``params``)."""
    body = response.json()
    assert set(body) >= {"detail", "field", "reason", "errors"}
    return {key.split(".")[0].split("[")[0] for key in body["errors"]}


def test_admin_creates_a_webhook_channel_and_nobody_sees_the_secret(admin_api, viewer_api):
    response = admin_api.post("/api/v1/channels/", WEBHOOK, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert isinstance(body["id"], int)
    assert WEBHOOK_SECRET not in response.content.decode()
    assert body["config"] == {"url": "https://hooks.example.com/…", "secret": "********"}
    stored = Channel.objects.get(pk=body["id"])
    assert stored.config["secret"] == WEBHOOK_SECRET
    for client in (admin_api, viewer_api):
        listing = client.get("/api/v1/channels/")
        assert listing.status_code == 200
        assert WEBHOOK_SECRET not in listing.content.decode()
    audit = AuditEvent.objects.get(action="channel.create")
    assert audit.actor_name == "ada" and WEBHOOK_SECRET not in str(audit.after)


def test_editing_a_channel_without_its_secret_keeps_the_secret(admin_api):
    channel_id = admin_api.post("/api/v1/channels/", WEBHOOK, format="json").json()["id"]
    response = admin_api.patch(
        f"/api/v1/channels/{channel_id}/",
        {"config": {"url": "https://other.example.com/x", "secret": "********"}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert Channel.objects.get(pk=channel_id).config == {
        "url": "https://other.example.com/x",
        "secret": WEBHOOK_SECRET,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**WEBHOOK, "config": {"url": "nope", "secret": WEBHOOK_SECRET}}, "url"),
        ({**WEBHOOK, "config": {"url": "https://x.example", "secret": "short"}}, "secret"),
        ({"name": "m", "kind": "email", "config": {"to": ["not-an-address"]}}, "to"),
        ({"name": "a", "kind": "apprise", "config": {"urls": ["nosuch://x"]}}, "urls"),
    ],
)
def test_bad_channel_config_is_400_naming_the_key(admin_api, body, field):
    response = admin_api.post("/api/v1/channels/", body, format="json")
    assert response.status_code == 400
    assert f"config.{field}" in response.json()["errors"]
    assert not Channel.objects.exists()


def test_email_and_apprise_channels(admin_api):
    for body in (
        {"name": "mail", "kind": "email", "config": {"to": ["oncall@example.com"]}},
        {"name": "slack", "kind": "apprise", "config": {"urls": ["json://127.0.0.1:9/x"]}},
    ):
        response = admin_api.post("/api/v1/channels/", body, format="json")
        assert response.status_code == 201, response.json()
    slack = admin_api.get("/api/v1/channels/?kind=apprise").json()["results"][0]
    assert slack["config"] == {"urls": ["json://********"]}


def test_operators_and_viewers_cannot_write_channels_or_rules(operator_api, viewer_api, admin_api):
    for client in (operator_api, viewer_api):
        assert client.post("/api/v1/channels/", WEBHOOK, format="json").status_code == 403
        rule = {"name": "r", "kind": "open_too_long"}
        assert client.post("/api/v1/alert-rules/", rule, format="json").status_code == 403


def test_anonymous_is_refused(client):
    for path in ("alerts", "alert-rules", "silences", "channels"):
        assert client.get(f"/api/v1/{path}/").status_code in (401, 403)


def test_admin_creates_a_rule_with_the_documented_shape(admin_api, service):
    channel_id = admin_api.post("/api/v1/channels/", WEBHOOK, format="json").json()["id"]
    response = admin_api.post(
        "/api/v1/alert-rules/",
        {
            "name": "db open",
            "kind": "open_too_long",
            "params": {"duration": 300},
            "severity": "critical",
            "channels": [channel_id],
            "service": service.pk,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["scope"] == "service" and body["channels"] == [channel_id]
    assert body["effective_params"] == {"duration": 300, "page_forced": False}
    rule = AlertRule.objects.get(pk=body["id"])
    assert list(rule.channels.all()) == [Channel.objects.get(pk=channel_id)]
    assert AuditEvent.objects.filter(action="alert_rule.create", target_id=str(rule.pk)).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "nope"}, "kind"),
        ({"name": "x", "kind": "failure_rate", "params": {"threshold": 2}}, "params"),
        ({"name": "x", "kind": "failure_rate", "params": [1]}, "params"),
        ({"name": "x", "kind": "failure_rate", "severity": "meh"}, "severity"),
        ({"name": "x", "kind": "failure_rate", "channels": [999]}, "channels"),
    ],
)
def test_bad_rule_is_400_naming_the_field(admin_api, body, field):
    response = admin_api.post("/api/v1/alert-rules/", body, format="json")
    assert response.status_code == 400
    assert field in error_fields(response)
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    ("weeks", "reason"),
    [
        (0, "must be at least 1"),
        (13, "must be at most 12"),
        (2.5, "must be a whole number"),
        ("4", "must be a number"),
    ],
)
def test_trip_rise_weeks_out_of_bounds_is_400_naming_it(admin_api, weeks, reason):
    response = admin_api.post(
        "/api/v1/alert-rules/",
        {"name": "x", "kind": "trip_rise", "params": {"weeks": weeks}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"params.weeks": reason}
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize("weeks", [1, 12])
def test_trip_rise_weeks_at_its_bounds_is_accepted(admin_api, weeks):
    response = admin_api.post(
        "/api/v1/alert-rules/",
        {"name": "x", "kind": "trip_rise", "params": {"weeks": weeks}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["effective_params"]["weeks"] == weeks


def test_a_rule_scoped_to_service_and_circuit_is_400(admin_api, fleet):
    db = fleet.circuit("db")
    response = admin_api.post(
        "/api/v1/alert-rules/",
        {"name": "x", "kind": "failure_rate", "service": fleet.service.pk, "circuit": db.pk},
        format="json",
    )
    assert response.status_code == 400 and "circuit" in error_fields(response)


@pytest.fixture
def alert(fleet, make_rule) -> Alert:
    rule = make_rule("open_too_long")
    return Alert.objects.create(
        rule=rule, circuit=fleet.circuit("db"), status="firing", started_at=T0, created_at=T0
    )


def test_alerts_list_and_operator_acknowledges(alert, operator_api, viewer_api):
    listing = viewer_api.get("/api/v1/alerts/?status=firing").json()
    [row] = listing["results"]
    assert (row["rule_name"], row["service"], row["circuit_name"], row["silenced"]) == (
        alert.rule.name,
        "checkout",
        "db",
        False,
    )
    assert viewer_api.post(f"/api/v1/alerts/{alert.pk}/ack/").status_code == 403
    response = operator_api.post(f"/api/v1/alerts/{alert.pk}/ack/")
    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == "otto"
    assert AuditEvent.objects.filter(action="alert.acknowledge").count() == 1
    assert operator_api.post(f"/api/v1/alerts/{alert.pk}/ack/").status_code == 200  # idempotent
    assert AuditEvent.objects.filter(action="alert.acknowledge").count() == 1


def test_a_resolved_alert_cannot_be_acknowledged(alert, operator_api):
    Alert.objects.filter(pk=alert.pk).update(status="resolved", resolved_at=T0)
    response = operator_api.post(f"/api/v1/alerts/{alert.pk}/ack/")
    assert response.status_code == 400 and "status" in error_fields(response)


def test_operator_silences_and_ends_a_silence(alert, operator_api, viewer_api):
    expires = (timezone.now() + timedelta(hours=1)).isoformat()
    body = {"circuit": alert.circuit_id, "expires_at": expires, "reason": "deploying"}
    assert viewer_api.post("/api/v1/silences/", body, format="json").status_code == 403
    response = operator_api.post("/api/v1/silences/", body, format="json")
    assert response.status_code == 201, response.json()
    silence = response.json()
    assert silence["active"] is True and silence["created_by"] == "otto"
    assert viewer_api.get(f"/api/v1/alerts/{alert.pk}/").json()["silenced"] is True
    assert operator_api.delete(f"/api/v1/silences/{silence['id']}/").status_code == 204
    assert Silence.objects.get(pk=silence["id"]).expires_at <= timezone.now()
    assert viewer_api.get(f"/api/v1/alerts/{alert.pk}/").json()["silenced"] is False
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"silence.create", "silence.expire"} <= actions


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_at": "2099-01-01T00:00:00Z", "reason": "x"}, "service"),
        ({"circuit": "CIRCUIT", "reason": "x"}, "expires_at"),
        ({"circuit": "CIRCUIT", "expires_at": "2000-01-01T00:00:00Z", "reason": "x"}, "expires_at"),
        ({"circuit": "CIRCUIT", "expires_at": "2099-01-01T00:00:00Z", "reason": "x"}, "expires_at"),
        ({"circuit": "CIRCUIT", "expires_at": "2099-01-01T00:00:00Z"}, "reason"),
    ],
)
def test_bad_silence_is_400_naming_the_field(alert, operator_api, body, field):
    body = {k: (alert.circuit_id if v == "CIRCUIT" else v) for k, v in body.items()}
    response = operator_api.post("/api/v1/silences/", body, format="json")
    assert response.status_code == 400
    assert field in error_fields(response)


def test_the_audit_log_filters_by_an_alerts_action(admin_api, viewer_api):
    admin_api.post("/api/v1/channels/", WEBHOOK, format="json")
    response = viewer_api.get("/api/v1/audit/?action=channel.create")
    assert response.status_code == 200, response.json()
    assert [e["action"] for e in response.json()["results"]] == ["channel.create"]
    assert viewer_api.get("/api/v1/audit/?action=override.force").json()["results"] == []
    assert viewer_api.get("/api/v1/audit/?action=no.such").status_code == 400

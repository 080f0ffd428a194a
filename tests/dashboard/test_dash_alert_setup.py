"""Alert rules and channels in the dashboard: who sees and changes what (the API's global
roles), the API's own validation and errors beside the inputs, secrets never shown,
every write and test audited like the API's, CSRF, and "Send test" through the real
transport (a webhook receiver on 127.0.0.1, Django's locmem mail backend)."""

from __future__ import annotations

import hashlib
import hmac
import html as html_lib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from controlplane.alerts.models import AlertRule, Channel
from controlplane.circuits.models import AuditEvent, Circuit, Membership, Service, Team
from dashboard.alert_setup import CHANNEL_ERROR_INPUTS, placed_errors, rule_error_inputs
from tests.alerts.alert_helpers import WEBHOOK_SECRET, Receiver

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/T1/B2/tok3n-in-the-path"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def channel(db: None) -> Channel:
    return Channel.objects.create(
        name="ops", kind="webhook", config={"url": HOOK, "secret": WEBHOOK_SECRET}
    )


@pytest.fixture
def rule(channel: Channel) -> AlertRule:
    rule = AlertRule.objects.create(
        name="db slow", kind="failure_rate", params={"threshold": 0.3}, severity="critical"
    )
    rule.channels.set([channel])
    return rule


def csrf_client(user: User) -> tuple[Client, str]:
    """A client that enforces CSRF, logged in as ``user``, and its CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/alerts/")
    return client, client.cookies["csrftoken"].value


def post(client: Client, token: str, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, {**data, "csrfmiddlewaretoken": token})


def rule_form(**changes: Any) -> dict[str, Any]:
    form = {
        "name": "payments failing",
        "kind": "failure_rate",
        "param_failure_rate_threshold": "0.4",
        "param_failure_rate_for": "30",
        "severity": "warning",
        "service": "",
        "circuit": "",
        "repeat_interval": "0",
        "enabled": "on",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def channel_form(**changes: Any) -> dict[str, Any]:
    form = {
        "name": "pager",
        "kind": "webhook",
        "webhook_url": HOOK,
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_timeout": "",
        "enabled": "on",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def error_for(html: str, name: str) -> str:
    match = re.search(rf'data-error-for="{name}">([^<]*)<', html)
    assert match, f"no error beside {name}"
    return html_lib.unescape(match.group(1))


# ------------------------------------------------------------------ who sees what


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_viewers_and_operators_read_the_lists_without_any_control(
    request: pytest.FixtureRequest, persona: str, rule: AlertRule, channel: Channel
) -> None:
    user = request.getfixturevalue(persona)
    client, token = csrf_client(user)
    html = client.get("/alerts/rules/").content.decode()
    assert 'data-rule="db slow"' in html and 'data-channel="ops"' in html
    assert "threshold" in html and "0.3" in html and "critical" in html
    for control in (
        "New rule",
        "New channel",
        "Send test",
        "/delete",
        '<form method="post" action="/alerts',
    ):
        assert control not in html, control
    assert WEBHOOK_SECRET not in html and "tok3n" not in html
    assert "https://hooks.example.com/…" in html
    # Every write is refused, as the API refuses it to them.
    assert client.get("/alerts/rules/new").status_code == 403
    assert client.get(f"/alerts/rules/{rule.pk}/").status_code == 403
    assert post(client, token, "/alerts/rules/new", rule_form()).status_code == 403
    assert post(client, token, f"/alerts/rules/{rule.pk}/delete", {}).status_code == 403
    assert post(client, token, "/alerts/channels/new", channel_form()).status_code == 403
    assert post(client, token, f"/alerts/channels/{channel.pk}/test", {}).status_code == 403
    assert post(client, token, f"/alerts/channels/{channel.pk}/delete", {}).status_code == 403
    assert AlertRule.objects.count() == 1 and Channel.objects.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="channel.").exists()


def test_the_api_draws_the_same_line(
    api_client_for: Any, viewer: User, operator: User, admin: User
) -> None:
    body = {"name": "r", "kind": "open_too_long", "params": {}}
    for user in (viewer, operator):
        assert (
            api_client_for(user).post("/api/v1/alert-rules/", body, format="json").status_code
            == 403
        )
    assert (
        api_client_for(admin).post("/api/v1/alert-rules/", body, format="json").status_code == 201
    )


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_a_team_role_alone_does_not_reach_rules_or_channels(
    login: Any, role: str, rule: AlertRule, service: Service, api_client_for: Any
) -> None:
    """Rules and channels belong to no team: like the API, only global roles reach them."""
    team = Team.objects.create(name="pay", slug="pay")
    service.team = team
    service.save()
    member = User.objects.create_user("tess", password="pw")
    Membership.objects.create(user=member, team=team, role=role)
    client = login(member)
    assert client.get("/alerts/rules/").status_code == 403
    assert client.get("/alerts/rules/new").status_code == 403
    assert "/alerts/rules/" not in client.get("/alerts/").content.decode()
    assert api_client_for(member).get("/api/v1/alert-rules/").status_code == 403


def test_the_alerts_page_links_the_lists_to_whoever_may_read_them(
    as_viewer: Client, login: Any, admin: User
) -> None:
    assert 'href="/alerts/rules/"' in as_viewer.get("/alerts/").content.decode()
    assert "create, edit, test and delete" in login(admin).get("/alerts/").content.decode()


def test_anonymous_is_sent_to_the_login_page(client: Client) -> None:
    response = client.get("/alerts/rules/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_post_without_the_csrf_token_is_refused(admin: User) -> None:
    client, _ = csrf_client(admin)
    assert client.post("/alerts/rules/new", rule_form()).status_code == 403
    assert not AlertRule.objects.exists()


# ------------------------------------------------------------------ rules


def test_the_form_shows_every_kinds_params_and_loads_its_script(login: Any, admin: User) -> None:
    html = login(admin).get("/alerts/rules/new").content.decode()
    for kind in ("open_too_long", "failure_rate", "trip_rise", "agent_silent"):
        assert f'data-kind-params="{kind}"' in html
    assert (
        'name="param_failure_rate_threshold"' in html
        and 'name="param_open_too_long_page_forced"' in html
    )
    assert "/static/dashboard/alert_setup.js" in html
    assert "<script>" not in html and " style=" not in html and " onchange=" not in html


def test_an_admin_creates_a_rule_audited_as_the_api_does(
    admin: User, channel: Channel, service: Service
) -> None:
    client, token = csrf_client(admin)
    form = rule_form(service=str(service.pk), channels=[str(channel.pk)])
    # Another kind's params are not the chosen kind's: ignored.
    form["param_open_too_long_duration"] = "5"
    response = post(client, token, "/alerts/rules/new", form)
    assert response.status_code == 302 and response["Location"] == "/alerts/rules/#rules"
    rule = AlertRule.objects.get(name="payments failing")
    assert rule.kind == "failure_rate" and rule.params == {"threshold": 0.4, "for": 30}
    assert rule.service == service and list(rule.channels.all()) == [channel]
    assert rule.enabled and rule.repeat_interval == 0
    event = AuditEvent.objects.get(action="alert_rule.create")
    assert event.actor_name == "ada" and event.before is None
    assert event.after["params"] == {"threshold": 0.4, "for": 30}
    assert event.after["channels"] == [channel.pk] and event.service_id == service.pk


@pytest.mark.parametrize(
    ("changes", "api_changes", "input_name", "path"),
    [
        (
            {"param_failure_rate_threshold": "1.5"},
            {"params": {"threshold": 1.5, "for": 30}},
            "param_failure_rate_threshold",
            "params.threshold",
        ),
        (
            {"param_failure_rate_for": "soon"},
            {"params": {"threshold": 0.4, "for": "soon"}},
            "param_failure_rate_for",
            "params.for",
        ),
        ({"name": ""}, {"name": ""}, "name", "name"),
        ({"repeat_interval": "-5"}, {"repeat_interval": -5}, "repeat_interval", "repeat_interval"),
        ({"severity": "panic"}, {"severity": "panic"}, "severity", "severity"),
    ],
)
def test_a_bad_value_is_refused_with_the_apis_own_error_beside_its_input(
    admin: User,
    api_client_for: Any,
    changes: dict[str, str],
    api_changes: dict[str, Any],
    input_name: str,
    path: str,
) -> None:
    api_body = {
        "name": "payments failing",
        "kind": "failure_rate",
        "params": {"threshold": 0.4, "for": 30},
    }
    api = api_client_for(admin).post(
        "/api/v1/alert-rules/", {**api_body, **api_changes}, format="json"
    )
    assert api.status_code == 400
    reason = api.json()["errors"][path]
    client, token = csrf_client(admin)
    response = post(client, token, "/alerts/rules/new", rule_form(**changes))
    assert response.status_code == 400
    html = response.content.decode()
    assert error_for(html, input_name) == f"{path}: {reason}"
    assert re.search(rf'name="{input_name}"[^>]*aria-invalid="true"', html) or re.search(
        rf'id="[^"]*"\s+name="{input_name}"[^>]*aria-invalid="true"', html
    )
    assert not AlertRule.objects.exists() and not AuditEvent.objects.exists()
    # What was typed is shown again.
    if input_name.startswith("param_") and changes[input_name]:
        assert f'value="{changes[input_name]}"' in html


def test_a_rule_scoped_to_a_service_and_a_circuit_gets_the_apis_cross_field_error(
    admin: User, service: Service
) -> None:
    circuit = Circuit.objects.create(service=service, name="db")
    client, token = csrf_client(admin)
    form = rule_form(service=str(service.pk), circuit=str(circuit.pk))
    html = post(client, token, "/alerts/rules/new", form).content.decode()
    assert (
        error_for(html, "circuit") == "circuit: scope a rule to a service or to a circuit, not both"
    )


def test_an_admin_edits_a_rule_and_the_audit_keeps_before_and_after(
    admin: User, rule: AlertRule, channel: Channel
) -> None:
    client, token = csrf_client(admin)
    html = client.get(f"/alerts/rules/{rule.pk}/").content.decode()
    assert 'value="db slow"' in html and 'value="0.3"' in html
    assert re.search(rf'name="channels" value="{channel.pk}" checked', html)
    form = rule_form(name="db slow", param_failure_rate_threshold="0.6", param_failure_rate_for="")
    response = post(client, token, f"/alerts/rules/{rule.pk}/", form)
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.params == {"threshold": 0.6} and rule.severity == "warning"
    assert list(rule.channels.all()) == []  # unticked
    event = AuditEvent.objects.get(action="alert_rule.update")
    assert event.before["params"] == {"threshold": 0.3} and event.after["params"] == {
        "threshold": 0.6
    }
    assert event.before["channels"] == [channel.pk] and event.after["channels"] == []


def test_deleting_a_rule_asks_first_then_deletes_it_audited(admin: User, rule: AlertRule) -> None:
    client, token = csrf_client(admin)
    confirm = client.get(f"/alerts/rules/{rule.pk}/delete")
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Delete alert rule db slow?" in html and "0 alerts (0 open)" in html
    assert AlertRule.objects.filter(pk=rule.pk).exists()
    response = post(client, token, f"/alerts/rules/{rule.pk}/delete", {})
    assert response.status_code == 302
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    event = AuditEvent.objects.get(action="alert_rule.delete")
    assert event.before["name"] == "db slow" and event.after is None


# ------------------------------------------------------------------ channels


def test_an_admin_creates_a_webhook_channel_and_its_secret_is_never_shown(admin: User) -> None:
    client, token = csrf_client(admin)
    response = post(client, token, "/alerts/channels/new", channel_form())
    assert response.status_code == 302 and response["Location"] == "/alerts/rules/#channels"
    channel = Channel.objects.get(name="pager")
    assert channel.config == {"url": HOOK, "secret": WEBHOOK_SECRET}
    for page in ("/alerts/rules/", f"/alerts/channels/{channel.pk}/"):
        html = client.get(page).content.decode()
        assert WEBHOOK_SECRET not in html and "tok3n" not in html and "/T1/" not in html, page
    event = AuditEvent.objects.get(action="channel.create")
    assert event.after["config"] == {"url": "https://hooks.example.com/…", "secret": "********"}
    assert WEBHOOK_SECRET not in json.dumps(event.after)


def test_a_bad_channel_is_refused_with_the_apis_errors_and_the_secret_is_not_echoed(
    admin: User, api_client_for: Any
) -> None:
    api = (
        api_client_for(admin)
        .post(
            "/api/v1/channels/",
            {
                "name": "pager",
                "kind": "webhook",
                "config": {"url": "ftp://x", "secret": "short-one", "timeout": 99},
            },
            format="json",
        )
        .json()["errors"]
    )
    client, token = csrf_client(admin)
    form = channel_form(webhook_url="ftp://x", webhook_secret="short-one", webhook_timeout="99")
    response = post(client, token, "/alerts/channels/new", form)
    assert response.status_code == 400
    html = response.content.decode()
    assert error_for(html, "webhook_url") == f"config.url: {api['config.url']}"
    assert error_for(html, "webhook_secret") == f"config.secret: {api['config.secret']}"
    assert error_for(html, "webhook_timeout") == f"config.timeout: {api['config.timeout']}"
    assert "short-one" not in html  # a typed secret is not sent back
    assert 'value="ftp://x"' in html
    email = post(
        client, token, "/alerts/channels/new", channel_form(kind="email", email_to="not-an-address")
    )
    assert (
        error_for(email.content.decode(), "email_to")
        == "config.to: 'not-an-address' is not an email address"
    )
    assert not Channel.objects.exists() and not AuditEvent.objects.exists()


def test_editing_a_channel_keeps_the_stored_secret_and_url_unless_retyped(
    admin: User, channel: Channel
) -> None:
    client, token = csrf_client(admin)
    html = client.get(f"/alerts/channels/{channel.pk}/").content.decode()
    assert 'value="https://hooks.example.com/…"' in html
    assert re.search(r'name="webhook_secret"[^>]*>', html) and WEBHOOK_SECRET not in html
    # Left as shown: the stored URL and secret stay; the timeout changes.
    form = channel_form(
        name="ops",
        webhook_url="https://hooks.example.com/…",
        webhook_secret="",
        webhook_timeout="5",
    )
    assert post(client, token, f"/alerts/channels/{channel.pk}/", form).status_code == 302
    channel.refresh_from_db()
    assert channel.config == {"url": HOOK, "secret": WEBHOOK_SECRET, "timeout": 5}
    # A new URL replaces it.
    form["webhook_url"] = "https://other.example.com/hook"
    assert post(client, token, f"/alerts/channels/{channel.pk}/", form).status_code == 302
    channel.refresh_from_db()
    assert channel.config["url"] == "https://other.example.com/hook"
    assert channel.config["secret"] == WEBHOOK_SECRET
    events = AuditEvent.objects.filter(action="channel.update").order_by("id")
    assert events.count() == 2
    assert WEBHOOK_SECRET not in json.dumps([e.before for e in events] + [e.after for e in events])


def test_the_api_keeps_a_url_sent_back_as_it_showed_it(
    admin: User, api_client_for: Any, channel: Channel
) -> None:
    api = api_client_for(admin)
    shown = api.get(f"/api/v1/channels/{channel.pk}/").json()
    response = api.put(f"/api/v1/channels/{channel.pk}/", {**shown, "name": "ops2"}, format="json")
    assert response.status_code == 200, response.json()
    channel.refresh_from_db()
    assert channel.config == {"url": HOOK, "secret": WEBHOOK_SECRET} and channel.name == "ops2"


def test_deleting_a_channel_names_the_rules_that_lose_it(
    admin: User, rule: AlertRule, channel: Channel
) -> None:
    client, token = csrf_client(admin)
    html = client.get(f"/alerts/channels/{channel.pk}/delete").content.decode()
    assert "Rules that lose this channel: db slow." in html
    assert post(client, token, f"/alerts/channels/{channel.pk}/delete", {}).status_code == 302
    assert not Channel.objects.exists() and list(rule.channels.all()) == []
    event = AuditEvent.objects.get(action="channel.delete")
    assert event.before["config"]["secret"] == "********" and event.after is None


# ------------------------------------------------------------------ send test


def test_send_test_posts_a_signed_notification_to_the_real_receiver(
    admin: User, channel: Channel, receiver: Receiver
) -> None:
    channel.config = {"url": receiver.url, "secret": WEBHOOK_SECRET}
    channel.save()
    client, token = csrf_client(admin)
    response = post(client, token, f"/alerts/channels/{channel.pk}/test", {})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-test-ok="yes"' in html and "HTTP 200 from the webhook" in html
    [(headers, raw)] = receiver.requests
    expected = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Switchyard-Signature"] == f"sha256={expected}"
    [body] = receiver.bodies()
    assert body["event"] == "test" and body["alert"]["rule"] == "test of channel ops"
    assert "delivery_id" not in body and "X-Switchyard-Delivery" not in headers
    event = AuditEvent.objects.get(action="channel.test")
    assert event.actor_name == "ada" and event.after["ok"] is True
    assert event.after["detail"] == "HTTP 200 from the webhook"


@pytest.mark.parametrize(
    ("statuses", "detail"),
    [([404], "HTTP 404 from the webhook"), ([503], "HTTP 503 from the webhook")],
)
def test_send_test_reports_the_receivers_refusal(
    admin: User, channel: Channel, receiver: Receiver, statuses: list[int], detail: str
) -> None:
    receiver.statuses = statuses
    channel.config = {"url": receiver.url, "secret": WEBHOOK_SECRET}
    channel.save()
    client, token = csrf_client(admin)
    html = post(client, token, f"/alerts/channels/{channel.pk}/test", {}).content.decode()
    assert (
        'data-test-ok="no"' in html
        and f"Test failed</strong> on channel ops (webhook): {detail}" in html
    )
    channel.refresh_from_db()
    assert channel.failed_at is None  # a test does not mark the channel
    assert AuditEvent.objects.get(action="channel.test").after["ok"] is False


def test_send_test_reports_an_unreachable_webhook(admin: User, channel: Channel) -> None:
    channel.config = {"url": "http://127.0.0.1:9/hook", "secret": WEBHOOK_SECRET, "timeout": 2}
    channel.save()
    client, token = csrf_client(admin)
    html = post(client, token, f"/alerts/channels/{channel.pk}/test", {}).content.decode()
    assert 'data-test-ok="no"' in html and "webhook unreachable" in html
    assert WEBHOOK_SECRET not in html


def test_send_test_of_an_email_channel_goes_through_djangos_mail_backend(
    admin: User, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel = Channel.objects.create(
        name="mail", kind="email", config={"to": ["oncall@example.com"]}
    )
    client, token = csrf_client(admin)
    html = post(client, token, f"/alerts/channels/{channel.pk}/test", {}).content.decode()
    assert 'data-test-ok="yes"' in html and "1 address" in html
    [message] = mail.outbox
    assert message.to == ["oncall@example.com"] and message.subject.startswith(
        "[TEST] test of channel mail"
    )


def test_the_api_sends_the_same_test(
    admin_api: APIClient, viewer_api: APIClient, channel: Channel, receiver: Receiver
) -> None:
    channel.config = {"url": receiver.url, "secret": WEBHOOK_SECRET}
    channel.save()
    assert viewer_api.post(f"/api/v1/channels/{channel.pk}/test/").status_code == 403
    response = admin_api.post(f"/api/v1/channels/{channel.pk}/test/")
    assert response.status_code == 200
    assert (
        response.json()["ok"] is True and response.json()["detail"] == "HTTP 200 from the webhook"
    )
    assert len(receiver.requests) == 1
    assert AuditEvent.objects.filter(action="channel.test").count() == 1


def test_the_lists_cost_the_same_queries_for_one_or_many_rules_and_channels(
    login: Any, admin: User, rule: AlertRule, service: Service
) -> None:
    client = login(admin)
    client.get("/alerts/rules/")
    with CaptureQueriesContext(connection) as few:
        assert client.get("/alerts/rules/").status_code == 200
    circuit = Circuit.objects.create(service=service, name="db")
    for n in range(6):
        channel = Channel.objects.create(
            name=f"mail-{n}", kind="email", config={"to": ["a@example.com"]}
        )
        more = AlertRule.objects.create(
            name=f"rule-{n}", kind="open_too_long", circuit=circuit if n % 2 else None,
            service=None if n % 2 else service,
        )  # fmt: skip
        more.channels.set([channel])
    with CaptureQueriesContext(connection) as many:
        html = client.get("/alerts/rules/").content.decode()
    assert html.count("<tr data-rule=") == 7 and html.count("<tr data-channel=") == 7
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_an_error_about_no_input_of_the_form_is_shown_above_it() -> None:
    errors = {"config": "must be an object", "name": "too long", "config.to": "bad"}
    assert placed_errors(errors, CHANNEL_ERROR_INPUTS) == {
        "form": "config: must be an object",
        "name": "name: too long",
        "email_to": "config.to: bad",
    }
    assert placed_errors(
        {"params.duration": "x", "params.nope": "y"}, rule_error_inputs("open_too_long")
    ) == {
        "param_open_too_long_duration": "params.duration: x",
        "form": "params.nope: y",
    }

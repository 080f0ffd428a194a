"""Delivery: a signed webhook to a real receiver on 127.0.0.1, retries and permanent
failures, every attempt recorded, and exactly-once under competing workers."""

import hashlib
import hmac
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alert_helpers import T0, WEBHOOK_SECRET, Receiver
from django.core import mail
from django.db import connection
from django.test import override_settings

from controlplane.alerts.delivery import deliver
from controlplane.alerts.evaluate import due_notifications, evaluate
from controlplane.alerts.models import Channel, Notification, NotificationAttempt
from controlplane.alerts.transports.webhook import WebhookTransport, sign

S = timedelta(seconds=1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def firing(fleet, make_rule, webhook_channel, receiver) -> Notification:
    """A firing open_too_long alert with one pending webhook notification to ``receiver``."""
    webhook_channel.config = {"url": receiver.url, "secret": WEBHOOK_SECRET}
    webhook_channel.save()
    make_rule("open_too_long", name="db open", params={"duration": 60}, channels=[webhook_channel])
    db = fleet.circuit("db")
    fleet.move(db, "closed", "open", T0)
    fleet.report(db, "open", T0 + 61 * S)
    import time_machine

    with time_machine.travel(T0 + 61 * S, tick=False):
        result = evaluate()
    assert len(result.notifications) == 1
    return Notification.objects.get(pk=result.notifications[0])


@pytest.mark.django_db
def test_webhook_arrives_signed_with_the_documented_shape(firing, receiver) -> None:
    assert deliver(firing.pk).outcome == "sent"
    [(headers, raw)] = receiver.requests
    expected = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Switchyard-Signature"] == f"sha256={expected}"
    assert headers["Content-Type"] == "application/json"
    [body] = receiver.bodies()
    assert body["event"] == "firing"
    assert body["delivery_id"] == firing.pk
    assert headers["X-Switchyard-Delivery"] == str(firing.pk)
    alert = body["alert"]
    assert (alert["rule"], alert["service"], alert["circuit"], alert["state"]) == (
        "db open",
        "checkout",
        "db",
        "firing",
    )
    assert alert["started_at"] == "2026-11-27T12:00:00.000000Z"
    firing.refresh_from_db()
    assert (firing.status, firing.attempts) == ("sent", 1)
    assert list(NotificationAttempt.objects.values_list("status", flat=True)) == ["ok"]
    assert deliver(firing.pk).outcome == "skipped"  # sent once, never again
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_a_500_is_retried_with_backoff_until_it_succeeds(firing, receiver) -> None:
    receiver.statuses = [500, 503]
    first = deliver(firing.pk)
    assert (first.outcome, first.retry_in) == ("retry", 10.0)
    firing.refresh_from_db()
    assert firing.claimed_at is None and firing.next_attempt_at is not None
    assert deliver(firing.pk).retry_in == 20.0
    assert deliver(firing.pk).outcome == "sent"
    assert len(receiver.requests) == 3
    attempts = NotificationAttempt.objects.filter(notification=firing).order_by("number")
    assert [(a.number, a.status) for a in attempts] == [(1, "retry"), (2, "retry"), (3, "ok")]
    assert "HTTP 500" in attempts[0].error


@pytest.mark.django_db
def test_a_permanent_4xx_is_not_retried_and_marks_the_channel(firing, receiver) -> None:
    receiver.statuses = [410]
    result = deliver(firing.pk)
    assert result.outcome == "failed" and result.retry_in is None
    assert deliver(firing.pk).outcome == "skipped"
    assert len(receiver.requests) == 1
    firing.refresh_from_db()
    assert firing.status == "failed"
    channel = Channel.objects.get(pk=firing.channel_id)
    assert channel.failed_at is not None and "410" in channel.last_error
    assert WEBHOOK_SECRET not in channel.last_error


@pytest.mark.django_db
@override_settings(SWITCHYARD_ALERT_MAX_ATTEMPTS=2)
def test_retries_stop_after_the_maximum_attempts(firing, receiver) -> None:
    receiver.statuses = [500, 500, 500]
    assert deliver(firing.pk).outcome == "retry"
    assert deliver(firing.pk).outcome == "failed"
    assert deliver(firing.pk).outcome == "skipped"
    assert len(receiver.requests) == 2


@pytest.mark.django_db
def test_an_unreachable_webhook_is_retried(firing) -> None:
    channel = firing.channel
    channel.config = {"url": "http://127.0.0.1:9/", "secret": WEBHOOK_SECRET, "timeout": 2}
    channel.save()
    result = deliver(firing.pk)
    assert result.outcome == "retry" and "unreachable" in result.error


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_deliver_one_notification_exactly_once(firing, receiver) -> None:
    receiver.delay = 0.3  # both workers are inside delivery at the same time
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=5)
            outcomes.append(deliver(firing.pk).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["sent", "skipped", "skipped", "skipped"]
    assert len(receiver.requests) == 1
    assert NotificationAttempt.objects.filter(notification=firing).count() == 1


@pytest.mark.django_db
def test_a_claim_left_by_a_killed_worker_expires_and_is_delivered_once(firing, receiver) -> None:
    from django.utils import timezone

    from controlplane.alerts.delivery import claim

    assert claim(firing.pk, timezone.now()) is not None  # a worker claims, then dies
    assert deliver(firing.pk).outcome == "skipped"
    assert firing.pk not in due_notifications(claim_ttl=120)
    later = timezone.now() + timedelta(seconds=121)
    assert due_notifications(later, claim_ttl=120) == [firing.pk]
    assert deliver(firing.pk, now=later).outcome == "sent"
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_email_goes_through_djangos_mail_backend(firing, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel = Channel.objects.create(
        name="mail", kind="email", config={"to": ["oncall@example.com"]}
    )
    note = Notification.objects.create(
        alert=firing.alert, channel=channel, event="firing", round=1, created_at=T0
    )
    assert deliver(note.pk).outcome == "sent"
    [message] = mail.outbox
    assert message.to == ["oncall@example.com"]
    assert message.subject == "[FIRING] db open: checkout/db"


@pytest.mark.django_db
def test_apprise_reaches_a_json_endpoint_on_loopback(firing, receiver) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    channel = Channel.objects.create(
        name="apprise", kind="apprise", config={"urls": [f"json://127.0.0.1:{port}/apprise"]}
    )
    channel.full_clean()
    note = Notification.objects.create(
        alert=firing.alert, channel=channel, event="firing", round=1, created_at=T0
    )
    assert deliver(note.pk).outcome == "sent"
    [body] = receiver.bodies()
    assert body["title"] == "[FIRING] db open: checkout/db"


def test_the_signature_is_hmac_sha256_of_the_raw_body() -> None:
    assert sign(b'{"a":1}', "k" * 16) == (
        "sha256=" + hmac.new(b"k" * 16, b'{"a":1}', hashlib.sha256).hexdigest()
    )


def test_webhook_config_is_validated_and_redacted() -> None:
    errors = WebhookTransport.config_errors({"url": "ftp://x", "secret": "short", "x": 1})
    assert set(errors) == {"url", "secret", "x"}
    shown = WebhookTransport.redact(
        {"url": "https://hooks.example.com/T0/B0/XYZ", "secret": WEBHOOK_SECRET}
    )
    assert shown == {"url": "https://hooks.example.com/…", "secret": "********"}


@pytest.mark.django_db
@override_settings(SWITCHYARD_PUBLIC_URL="https://switchyard.example.com/ops")
def test_notifications_link_to_the_circuit_page_at_the_alerts_window(firing, receiver) -> None:
    assert deliver(firing.pk).outcome == "sent"
    [body] = receiver.bodies()
    db = firing.alert.circuit
    # 15 minutes before the alert started, and no end while it is open (up to now).
    assert body["alert"]["url"] == (
        f"https://switchyard.example.com/ops/circuits/{db.pk}/?from=2026-11-27T11:45:00Z#traffic"
    )
    alert = firing.alert
    alert.resolved_at = T0 + 130.4 * S
    assert alert.window_query == "from=2026-11-27T11:45:00Z&to=2026-11-27T12:17:11Z"


@pytest.mark.django_db
def test_without_a_public_url_the_link_is_a_path_and_the_email_carries_it(firing) -> None:
    from controlplane.alerts.delivery import payload
    from controlplane.alerts.transports.email import subject_and_text

    body = payload(firing)
    assert body["alert"]["url"].startswith(f"/circuits/{firing.alert.circuit_id}/?from=")
    _, text = subject_and_text(body)
    assert f"url: {body['alert']['url']}" in text.splitlines()

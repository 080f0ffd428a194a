"""A Celery worker killed with SIGKILL in the middle of delivering a notification.

What delivery promises (docs/alerts.md, "Exactly once"): a notification is claimed
before it is sent; a worker that dies leaves its claim, which expires after
SWITCHYARD_ALERT_CLAIM_TTL, and the periodic sweep hands the notification out again.
A worker killed after the receiver got the request but before recording it sends it
once more after the TTL. So: the receiver gets it again, not before the TTL, with the
same bytes, signature and delivery id (it can deduplicate), the notification ends sent with one
recorded attempt, and a redelivered task sends nothing more.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.utils import timezone

from controlplane.alerts.delivery import deliver
from controlplane.alerts.models import AlertRule, Channel, Notification
from tests.alerts.alert_helpers import WEBHOOK_SECRET
from tests.alerts.alert_helpers import Fleet as Rows
from tests.e2e.conftest import database_url
from tests.reliability.costs import report_cost, wait_until
from tests.reliability.processes import ROOT, CeleryProcess

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)"),
]

CLAIM_TTL = 5


class HoldingReceiver:
    """A webhook receiver on 127.0.0.1 that records each POST with its arrival time and
    holds its answer while ``holding`` is set (then answers 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((time.monotonic(), dict(self.headers.items()), body))
                if receiver.holding.is_set():
                    receiver.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[HoldingReceiver]:
    r = HoldingReceiver()
    yield r
    r.close()


@pytest.fixture
def celery_env(transactional_db: None) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("celery", "unacked", "unacked_index")  # nothing left by earlier runs
    client.close()
    env = dict(os.environ)
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        SWITCHYARD_REDIS_PREFIX=f"reliability-{os.getpid()}",
        DEBUG="1",
        PYTHONPATH=str(ROOT),
        DATABASE_POOL="0",
        SWITCHYARD_ALERT_INTERVAL="1",
        SWITCHYARD_ALERT_CLAIM_TTL=str(CLAIM_TTL),
        SWITCHYARD_ALERT_RETRY_BACKOFF="1",
        # Snapshots written once stay live for the whole test (live window 3 x 60 s).
        SWITCHYARD_POLL_INTERVAL="60",
    )
    return env


@pytest.fixture
def celery(celery_env: dict[str, str]) -> Iterator[dict[str, CeleryProcess]]:
    procs = {
        "beat": CeleryProcess("beat", celery_env).start(),
        "worker": CeleryProcess("worker", celery_env).start(),
    }
    yield procs
    for proc in procs.values():
        proc.stop()


def test_worker_sigkilled_mid_delivery_delivers_again_after_the_claim_ttl(
    celery: dict[str, CeleryProcess], celery_env: dict[str, str], receiver: HoldingReceiver, service
):
    channel = Channel.objects.create(
        name="hook", kind="webhook", config={"url": receiver.url, "secret": WEBHOOK_SECRET}
    )
    rule = AlertRule.objects.create(name="db open", kind="open_too_long", params={"duration": 1})
    rule.channels.set([channel])
    rows = Rows(service)
    db = rows.circuit("db")
    now = timezone.now()
    rows.move(db, "closed", "open", now)
    rows.report(db, "open", now)
    receiver.holding.set()

    def logs() -> str:
        return "\n".join(p.output() for p in celery.values())

    try:
        wait_until(lambda: receiver.requests, 90, "the first delivery to reach the receiver")
    except AssertionError:
        raise AssertionError(logs()) from None
    notification = Notification.objects.get()
    assert notification.status == "pending"
    assert notification.claimed_at is not None  # claimed: nobody else sends it meanwhile

    # The worker dies while the receiver holds the request: nothing is recorded.
    celery["worker"].kill()
    killed = time.monotonic()
    receiver.holding.clear()
    celery["worker"] = CeleryProcess("worker", celery_env).start()

    def sent() -> bool:
        notification.refresh_from_db()
        return notification.status == "sent"

    try:
        wait_until(sent, CLAIM_TTL + 60, "the notification to be delivered again")
    except AssertionError:
        raise AssertionError(logs()) from None
    delivered_after = time.monotonic() - killed

    (first_at, first_headers, first), (second_at, second_headers, second) = receiver.requests
    # Not sent again before the claim expired, and byte for byte the same request.
    assert second_at - first_at >= CLAIM_TTL
    assert second == first
    assert second_headers["X-Switchyard-Signature"] == first_headers["X-Switchyard-Signature"]
    # The delivery id a receiver deduplicates by: the notification's, on both.
    assert first_headers["X-Switchyard-Delivery"] == str(notification.pk)
    assert second_headers["X-Switchyard-Delivery"] == str(notification.pk)
    attempts = list(notification.attempt_rows.values_list("number", "status"))
    assert attempts == [(1, "ok")]
    assert notification.attempts == 1
    # The killed worker's task, redelivered by the broker later, sends nothing more.
    assert deliver(notification.pk).outcome == "skipped"
    assert len(receiver.requests) == 2
    report_cost(
        "Celery worker SIGKILL mid-delivery",
        delivered_after_the_kill_s=delivered_after,
        claim_ttl_s=float(CLAIM_TTL),
        requests_at_the_receiver=len(receiver.requests),
        answered=1,
        attempts_recorded=len(attempts),
        duplicate="byte-identical, same signature and delivery id",
    )

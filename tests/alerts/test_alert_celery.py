"""A real Celery worker and beat (subprocesses) on Redis against the test database: a
circuit held open past T gives exactly one firing and, once closed, exactly one
resolved notification at a real webhook receiver on 127.0.0.1 (the receiver's first
answer is a 500, so the firing one is delivered by the task's retry)."""

import hashlib
import hmac
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alert_helpers import WEBHOOK_SECRET, Fleet, Receiver
from django.conf import settings
from django.db import connection
from django.utils import timezone

from controlplane.alerts.models import Alert, AlertRule, Channel, Notification

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)"),
]


def database_url() -> str:
    s = connection.settings_dict
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{s.get('USER') or 'postgres'}@{host}:{port}/{s['NAME']}"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


class CeleryProcesses:
    """celery worker and celery beat, started with the given environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="switchyard-celery-")
        self.log = Path(self.dir) / "celery.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        celery = [sys.executable, "-m", "celery", "-A", "controlplane"]
        for args in (
            ["worker", "--pool", "threads", "--concurrency", "4", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
            ["beat", "--schedule", str(Path(self.dir) / "beat-schedule"), "--loglevel", "INFO"],
        ):  # fmt: skip
            self.procs.append(
                subprocess.Popen(
                    [*celery, *args],
                    cwd=ROOT,
                    env=env,
                    stdout=open(self.log, "ab"),  # noqa: SIM115
                    stderr=subprocess.STDOUT,
                )
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def celery_processes(transactional_db: None) -> Iterator[CeleryProcesses]:
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete("celery")  # no stale tasks of old runs
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        DEBUG="1",
        PYTHONPATH=str(ROOT),
        SWITCHYARD_ALERT_INTERVAL="2",
        # Snapshots written once stay live for the whole test (live window 3 x 60 s).
        SWITCHYARD_POLL_INTERVAL="60",
        DATABASE_POOL="0",
        SWITCHYARD_ALERT_RETRY_BACKOFF="1",
    )
    env.pop("CELERY_BROKER_URL", None)
    procs = CeleryProcesses(env)
    yield procs
    procs.stop()


def test_held_open_circuit_fires_once_and_resolves_once(celery_processes, receiver, service):
    channel = Channel.objects.create(
        name="hook", kind="webhook", config={"url": receiver.url, "secret": WEBHOOK_SECRET}
    )
    rule = AlertRule.objects.create(name="db open", kind="open_too_long", params={"duration": 3})
    rule.channels.set([channel])
    receiver.statuses = [500]
    fleet = Fleet(service)
    db = fleet.circuit("db")
    now = timezone.now()
    fleet.move(db, "closed", "open", now)
    fleet.report(db, "open", now)

    def events() -> list[str]:
        return [body["event"] for body in receiver.bodies()]

    wait_for(
        lambda: events() == ["firing", "firing"], 90, "the firing webhook and its retry",
        celery_processes.output,
    )  # fmt: skip
    firing = Notification.objects.get(event="firing")

    def attempts() -> list[str]:
        return list(firing.attempt_rows.order_by("number").values_list("status", flat=True))

    wait_for(lambda: attempts() == ["retry", "ok"], 10, "the attempts", celery_processes.output)
    headers, raw = receiver.requests[1]
    expected = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Switchyard-Signature"] == f"sha256={expected}"
    assert receiver.bodies()[0]["alert"]["circuit"] == "db"

    closed_at = timezone.now()
    fleet.move(db, "open", "half_open", closed_at)
    fleet.move(db, "half_open", "closed", closed_at + timedelta(milliseconds=1))
    fleet.report(db, "closed", closed_at + timedelta(milliseconds=1))
    wait_for(
        lambda: events() == ["firing", "firing", "resolved"], 60, "the resolved webhook",
        celery_processes.output,
    )  # fmt: skip

    # Two later cycles run (a canary rule fires, then resolves) and send nothing more.
    canary = fleet.circuit("canary")
    fleet.report(canary, "closed", timezone.now(), failure_rate=0.9)
    AlertRule.objects.create(name="canary", kind="failure_rate", params={"for": 0})

    def canary_is(status: str) -> Callable[[], bool]:
        return lambda: Alert.objects.filter(rule__name="canary", status=status).exists()

    wait_for(canary_is("firing"), 60, "a later cycle", celery_processes.output)
    fleet.report(canary, "closed", timezone.now(), failure_rate=0.0)
    wait_for(canary_is("resolved"), 60, "another cycle", celery_processes.output)
    assert events() == ["firing", "firing", "resolved"]
    assert Alert.objects.get(rule=rule).status == "resolved"
    assert list(Notification.objects.values_list("event", "status")) == [
        ("resolved", "sent"),
        ("firing", "sent"),
    ]

"""The automatic rollback runs on its own: a real Celery worker and beat (subprocesses)
on Redis against the test database roll back a canary that trips past its margin,
audited as by the system, within a few check intervals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from controlplane.circuits.models import (
    AuditEvent,
    Circuit,
    Instance,
    Rollout,
    Service,
    Snapshot,
    Transition,
)
from controlplane.circuits.operations import create_config_version
from controlplane.circuits.rollouts import start_rollout

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)"),
]
CHECK_INTERVAL = 1  # SWITCHYARD_ROLLOUT_CHECK_INTERVAL of the worker and beat


def database_url() -> str:
    s = connection.settings_dict
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{s.get('USER') or 'postgres'}@{host}:{port}/{s['NAME']}"


@pytest.fixture
def celery_log(transactional_db: None) -> Iterator[Path]:
    """celery worker and beat on this test's database and Redis; their log."""
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete("celery")  # no stale tasks of old runs
    folder = Path(tempfile.mkdtemp(prefix="switchyard-rollout-celery-"))
    log = folder / "celery.log"
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        DEBUG="1",
        PYTHONPATH=str(ROOT),
        SWITCHYARD_ROLLOUT_CHECK_INTERVAL=str(CHECK_INTERVAL),
        SWITCHYARD_POLL_INTERVAL="60",  # snapshots stay live for the whole test
        DATABASE_POOL="0",
    )
    env.pop("CELERY_BROKER_URL", None)
    celery = [sys.executable, "-m", "celery", "-A", "controlplane"]
    procs = []
    with open(log, "ab") as out:
        for args in (
            ["worker", "--pool", "threads", "--concurrency", "2", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
            ["beat", "--schedule", str(folder / "beat-schedule"), "--loglevel", "INFO"],
        ):  # fmt: skip
            procs.append(
                subprocess.Popen(
                    [*celery, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            )
    try:
        yield log
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_beat_rolls_back_a_canary_that_trips_past_its_margin(celery_log: Path) -> None:
    now = timezone.now()
    service = Service.objects.create(name="shop")
    circuit = Circuit.objects.create(service=service, name="db")
    create_config_version(circuit, {"timeout": 20}, expected_version=0, user=None)
    instances = [
        Instance.objects.create(service=service, instance_id=f"web-{n}", first_seen=now,
                                last_seen=now + timedelta(minutes=10))
        for n in range(4)
    ]  # fmt: skip
    rollout = start_rollout(
        circuit, user=None, config={"timeout": 5}, instances=["web-0"], auto_rollback_margin=1.0
    )
    for n, instance in enumerate(instances):
        Snapshot.objects.create(instance=instance, circuit=circuit, state="closed",
                                config_version=2 if n == 0 else 1, updated_at=now)  # fmt: skip
    for seq in range(1, 3):  # the canary trips twice, the baseline never
        at = timezone.now()
        Transition.objects.create(
            instance=instances[0], circuit=circuit, seq=seq, from_state="closed",
            to_state="open", at=at, reason="failure_rate", config_version=2, received_at=at,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rollout.refresh_from_db()
        if rollout.state != "active":
            break
        time.sleep(0.2)
    logs = celery_log.read_text(errors="replace")[-4000:]
    assert rollout.state == "rolled_back", logs
    assert rollout.ended_by is None
    event = AuditEvent.objects.get(action="rollout.rollback")
    assert event.actor_name == "system" and "automatic" in event.reason
    assert Rollout.objects.filter(state="active").count() == 0
    circuit.refresh_from_db()
    assert circuit.current_config.version == 1


def test_the_check_is_scheduled_in_the_one_beat_schedule() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["circuits-rollout-check"]
    assert entry["task"] == "circuits.rollout_check"
    assert entry["options"]["expires"] < entry["schedule"]

"""breakers.integrations.celery with a real Celery worker (prefork, Redis broker) and a
real control plane: the agent starts in the worker's child process, failures of a
task's body open its breaker, rejected tasks fail or are retried, and an operator's
force reaches the worker."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Service, Snapshot
from tests.e2e.conftest import ROOT, ControlPlaneProcess, override, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


class Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.log = Path(tempfile.mkdtemp(prefix="breakers-celery-")) / "worker.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.breakers.celery_app", "worker",
             "--pool", "prefork", "--concurrency", "1", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def celery_setup(
    control_plane: ControlPlaneProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Service, Worker]]:
    service = Service.objects.create(name="billing")
    token = create_agent_token(service)[1]
    variables = {
        "BREAKER_TESTS_BROKER": settings.REDIS_URL or "redis://127.0.0.1:6379/15",
        "BREAKER_TESTS_QUEUE": f"breaker-tests-{uuid.uuid4().hex[:12]}",
        "SWITCHYARD_URL": control_plane.url,
        "SWITCHYARD_TOKEN": token,
        "SWITCHYARD_SERVICE": service.name,
        "SWITCHYARD_INTERVAL": "1",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    module = importlib.import_module("tests.breakers.celery_app")
    module = importlib.reload(module)  # this test's broker and queue
    worker = Worker({**control_plane.env, **os.environ, **variables, "PYTHONPATH": str(ROOT)})
    try:
        yield module, service, worker
    finally:
        worker.stop()


def test_a_guarded_task_trips_is_rejected_and_follows_the_operator(
    control_plane: ControlPlaneProcess, celery_setup: Any, operator: Any
) -> None:
    tasks, service, worker = celery_setup
    operator_token = create_api_token(operator)[1]
    assert tasks.post_entry.delay(True).get(timeout=30) == "posted", worker.output()
    # The agent runs in the worker's child process (worker_process_init) and reports.
    assert wait_for(
        lambda: Circuit.objects.filter(service=service, name="ledger").exists(), timeout=15
    ), worker.output()
    for _ in range(2):  # failure_threshold=2
        with pytest.raises(Exception) as failed:
            tasks.post_entry.delay(False).get(timeout=15)
        assert type(failed.value).__name__ == "ConnectionError"
    with pytest.raises(Exception) as rejected:  # max_retries=0: rejected at once
        tasks.post_entry.delay(True).get(timeout=15)
    assert type(rejected.value).__name__ == "CircuitOpenError", worker.output()
    assert wait_for(
        lambda: Snapshot.objects.filter(circuit__name="ledger", state="open").exists(), timeout=10
    )

    # An operator forces it closed: the worker runs the task again within seconds.
    cid = Circuit.objects.get(service=service, name="ledger").pk
    override(control_plane, operator_token, cid, "forced_closed", "ledger is back")

    def runs() -> bool:
        try:
            return bool(tasks.post_entry.delay(True).get(timeout=10) == "posted")
        except Exception:
            return False

    assert wait_for(runs, timeout=10), worker.output()

    # Forced open, a patient task is retried (0.2 s apart, 3 times), then fails.
    override(control_plane, operator_token, cid, "forced_open", "ledger maintenance")

    def rejects() -> bool:
        try:
            tasks.post_entry.delay(True).get(timeout=10)
        except Exception as exc:
            return type(exc).__name__ == "CircuitOpenError"
        return False

    assert wait_for(rejects, timeout=10), worker.output()
    with pytest.raises(Exception) as waited:
        tasks.post_entry_patiently.delay().get(timeout=20)
    assert type(waited.value).__name__ == "CircuitOpenError"
    assert worker.output().count("Retry in 0.2s") >= 3, worker.output()

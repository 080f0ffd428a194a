"""A Celery application for tests/e2e/test_celery_integration_e2e.py: a task guarded by
the breaker "ledger" (BreakerTask) and the agent in every worker process (setup())."""

from __future__ import annotations

import os

from celery import Celery

from breakers import CircuitBreakerConfig
from breakers.integrations.celery import BreakerTask, setup

app = Celery(
    "breaker_tasks",
    broker=os.environ["BREAKER_TESTS_BROKER"],
    backend=os.environ["BREAKER_TESTS_BROKER"],
)
app.conf.task_default_queue = os.environ["BREAKER_TESTS_QUEUE"]
app.conf.worker_hijack_root_logger = False
setup()


@app.task(
    base=BreakerTask,
    breaker="ledger",
    breaker_config=CircuitBreakerConfig(failure_threshold=2, timeout=60),
    bind=True,
    max_retries=0,
)
def post_entry(self: BreakerTask, ok: bool) -> str:
    if not ok:
        raise ConnectionError("ledger down")
    return "posted"


@app.task(base=BreakerTask, breaker="ledger", bind=True, max_retries=3, open_retry_delay=0.2)
def post_entry_patiently(self: BreakerTask) -> str:
    return "posted after waiting"

"""Celery: tasks whose body runs through a breaker, and the agent in every worker
process (``pip install "switchyard-breakers[celery]"``)::

    from celery import Celery
    from breakers.integrations.celery import BreakerTask, setup

    app = Celery("shop")
    setup()  # the agent from SWITCHYARD_URL / _TOKEN / _SERVICE in each worker process

    @app.task(base=BreakerTask, breaker="ledger", bind=True, max_retries=5)
    def post_entry(self, entry_id):
        ledger.post(entry_id)  # the outbound call the breaker guards

- The task's body is the breaker's call: an exception it raises counts as a failure of
  the dependency, a return as a success, and its latency is measured. Celery's own
  control flow (``self.retry()``, ``Ignore``, ``Reject``) passes through uncounted.
- While the circuit rejects, the task does not run its body: the breaker counts it as
  rejected (the dashboard's rejected/s), and the task is retried after the breaker's
  ``retry_after`` (``open_retry_delay`` when the circuit is forced open), within the
  task's ``max_retries``; past them, or with ``retry_when_open = False``, it fails with
  ``CircuitOpenError``.
- ``breaker`` names the breaker (default: the task's name), ``breaker_config`` creates
  it, ``breaker_registry`` picks the registry (default: the process-wide one).
- ``setup()`` starts the agent in each prefork child (``worker_process_init``), or in
  the worker itself for the threads, solo and green pools (``worker_init``), and stops
  it with a last flush at shutdown.
"""

from __future__ import annotations

from typing import Any, Literal

try:
    from celery import Task, signals
    from celery.exceptions import Ignore, Reject, Retry
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        'breakers.integrations.celery needs celery: pip install "switchyard-breakers[celery]"'
    ) from exc

from ..agent import Agent
from ..config import CircuitBreakerConfig
from ..errors import CircuitOpenError
from ..registry import CircuitBreakerRegistry, default_registry
from .asgi import AgentLifecycle

__all__ = ["BreakerTask", "setup"]

_CONTROL = (Retry, Ignore, Reject)


class BreakerTask(Task):  # type: ignore[type-arg]
    """A Celery task base class: the body runs through the task's breaker."""

    abstract = True
    #: The breaker's name in the registry; None: the task's name.
    breaker: str | None = None
    breaker_config: CircuitBreakerConfig | None = None
    breaker_registry: CircuitBreakerRegistry | None = None
    #: Retry a rejected task after the breaker's retry_after (within max_retries).
    retry_when_open: bool = True
    #: Seconds before retrying when the circuit gives no retry_after (forced open).
    open_retry_delay: float = 30.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        registry = default_registry if self.breaker_registry is None else self.breaker_registry
        breaker = registry.get_or_create(self.breaker or self.name, self.breaker_config)
        body = super().__call__

        def run() -> tuple[bool, Any]:
            try:
                return True, body(*args, **kwargs)
            except _CONTROL as control:  # the task's own decision, not the dependency's
                return False, control

        try:
            done, value = breaker.call(run)
        except CircuitOpenError as error:
            if not self.retry_when_open or self.request.called_directly:
                raise
            delay = error.retry_after if error.retry_after else self.open_retry_delay
            raise self.retry(exc=error, countdown=max(0.1, delay)) from None
        if not done:
            raise value
        return value


def setup(
    agent: Agent | Literal["env"] | None = "env", registry: CircuitBreakerRegistry | None = None
) -> AgentLifecycle:
    """Run the agent in every worker process (see the module's docstring)."""
    lifecycle = AgentLifecycle(agent, registry)

    def start_child(**_: Any) -> None:
        lifecycle.start()

    def start_worker(sender: Any = None, **_: Any) -> None:
        # Prefork children start their own (worker_process_init); the parent runs no task.
        pool = getattr(sender, "pool_cls", None)
        name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
        if "prefork" not in str(name):
            lifecycle.start()

    def stop(**_: Any) -> None:
        lifecycle.stop()

    signals.worker_process_init.connect(start_child, weak=False)
    signals.worker_process_shutdown.connect(stop, weak=False)
    signals.worker_init.connect(start_worker, weak=False)
    signals.worker_shutdown.connect(stop, weak=False)
    return lifecycle

"""Celery tasks: thin wrappers over plain functions."""

from celery import shared_task

from controlplane.circuits.drills import run_drills
from controlplane.circuits.maintenance import history_maintenance, traffic_maintenance
from controlplane.circuits.operations import expire_overrides
from controlplane.circuits.rollouts import evaluate_auto_rollbacks


@shared_task(ignore_result=True)
def expire_overrides_task() -> int:
    """End overrides past their expiry and wake their services' agents."""
    return expire_overrides()


@shared_task(name="circuits.drills", ignore_result=True)
def drills_task() -> dict[str, int]:
    """End the drills past their end (waking their services' agents) and settle the
    outcomes of the ended ones."""
    return run_drills()


@shared_task(name="circuits.traffic_maintenance", ignore_result=True)
def traffic_maintenance_task() -> dict[str, int] | None:
    """Traffic partitions ahead, roll-ups and retention; None when a run is under way."""
    done = traffic_maintenance()
    return None if done is None else done.counts()


@shared_task(name="circuits.history_maintenance", ignore_result=True)
def history_maintenance_task() -> dict[str, int] | None:
    """History partitions ahead and retention; None when a run is under way."""
    done = history_maintenance()
    return None if done is None else done.counts()


@shared_task(name="circuits.rollout_check", ignore_result=True)
def rollout_check_task() -> list[int]:
    """Roll back the canary rollouts whose canary trips more than their margin allows."""
    return evaluate_auto_rollbacks()

"""Celery tasks: thin wrappers over plain functions."""

from celery import shared_task

from controlplane.circuits.operations import expire_overrides


@shared_task(ignore_result=True)
def expire_overrides_task() -> int:
    """End overrides past their expiry and wake their services' agents."""
    return expire_overrides()

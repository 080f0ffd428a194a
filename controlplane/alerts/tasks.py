"""Celery tasks: thin wrappers over evaluate() and deliver(), passing ids."""

from celery import shared_task
from django.conf import settings

from controlplane.alerts.delivery import deliver
from controlplane.alerts.evaluate import due_notifications, evaluate


@shared_task(ignore_result=True)
def evaluate_alerts_task() -> dict[str, int]:
    """One evaluation cycle; then enqueue its notifications and any left undelivered."""
    result = evaluate()
    due = due_notifications(claim_ttl=settings.SWITCHYARD_ALERT_CLAIM_TTL)
    for notification_id in sorted(set(result.notifications) | set(due)):
        deliver_notification_task.delay(notification_id)
    return {"matches": result.matches, "fired": result.fired, "resolved": result.resolved}


@shared_task(bind=True, ignore_result=True, max_retries=None, acks_late=True)
def deliver_notification_task(self, notification_id: int) -> str:  # type: ignore[no-untyped-def]
    """Deliver one notification; a retryable failure schedules a retry with backoff."""
    result = deliver(notification_id)
    if result.outcome == "retry" and result.retry_in is not None:
        raise self.retry(countdown=result.retry_in)
    return result.outcome

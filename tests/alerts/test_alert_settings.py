"""Alert settings: the beat schedule in one place, and the checks on it."""

from django.conf import settings
from django.test import override_settings

from controlplane.alerts.checks import check_alert_settings


def test_beat_schedules_evaluation_and_override_expiry_with_short_expiry() -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE
    evaluate = schedule["alerts-evaluate"]
    assert evaluate["task"] == "controlplane.alerts.tasks.evaluate_alerts_task"
    assert evaluate["schedule"] == settings.SWITCHYARD_ALERT_INTERVAL == 15
    assert schedule["circuits-expire-overrides"]["task"].endswith("expire_overrides_task")
    assert check_alert_settings(None) == []


def test_a_claim_shorter_than_a_delivery_is_an_error() -> None:
    with override_settings(SWITCHYARD_ALERT_CLAIM_TTL=30):
        assert [e.id for e in check_alert_settings(None)] == ["switchyard.E101"]


def test_a_schedule_without_expiry_is_an_error() -> None:
    schedule = {"x": {"task": "t", "schedule": 10.0, "options": {"expires": 10.0}}}
    with override_settings(CELERY_BEAT_SCHEDULE=schedule):
        assert [e.id for e in check_alert_settings(None)] == ["switchyard.E102"]


def test_broker_defaults_to_redis_url() -> None:
    assert (settings.REDIS_URL or "filesystem://") == settings.CELERY_BROKER_URL
    assert settings.CELERY_TASK_ALWAYS_EAGER is False

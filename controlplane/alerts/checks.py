"""System checks of the alert settings."""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import Error, register

# The longest a transport may take (the webhook timeout's upper bound), seconds.
MAX_DELIVERY_SECONDS = 60


@register()
def check_alert_settings(app_configs: Iterable[Any] | None, **kwargs: Any) -> list[Error]:
    """A claim must outlive the slowest delivery, and beat's expiry must fit its interval."""
    problems = []
    if settings.SWITCHYARD_ALERT_CLAIM_TTL <= MAX_DELIVERY_SECONDS:
        problems.append(
            Error(
                f"SWITCHYARD_ALERT_CLAIM_TTL ({settings.SWITCHYARD_ALERT_CLAIM_TTL} s) is not "
                f"longer than the slowest delivery ({MAX_DELIVERY_SECONDS} s): a notification "
                "still in flight could be claimed again and sent twice.",
                hint=f"Set SWITCHYARD_ALERT_CLAIM_TTL above {MAX_DELIVERY_SECONDS}.",
                id="switchyard.E101",
            )
        )
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        expires = entry.get("options", {}).get("expires")
        if expires is None or expires >= float(entry["schedule"]):
            problems.append(
                Error(
                    f"CELERY_BEAT_SCHEDULE[{name!r}] has no expires shorter than its interval.",
                    hint="Give options.expires below the schedule so a backlog does not pile up.",
                    id="switchyard.E102",
                )
            )
    return problems

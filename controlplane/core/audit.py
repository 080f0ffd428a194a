"""The audit trail: one append-only row per change made by a person or by the system.

The row is ``controlplane.circuits.models.AuditEvent`` (it stays in the circuits app,
where its permissions and data live); every app records through ``record_audit``.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.circuits.models import AuditEvent

# actor_name of automatic actions (expiry, retention).
SYSTEM_ACTOR = "system"

# Every app's audit actions (value -> label), registered in its AppConfig.ready().
_actions: dict[str, str] = {}


def register_actions(choices: Iterable[tuple[str, str]]) -> None:
    """Make an app's audit actions known (to the audit API's ``action`` filter)."""
    _actions.update((str(value), str(label)) for value, label in choices)


def action_choices() -> list[tuple[str, str]]:
    """Every registered audit action as (value, label), sorted by value."""
    return sorted(_actions.items())


def actor_name(user: User | None) -> str:
    """The name recorded for an actor; "system" for automatic actions."""
    return user.get_username() if user is not None else SYSTEM_ACTOR


def record_audit(
    *,
    actor: User | None,
    action: str,
    target: Any,
    reason: str = "",
    before: Any = None,
    after: Any = None,
    service_id: int | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Write one audit event (inside the caller's transaction)."""
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor_name(actor),
        action=action,
        service_id=service_id,
        target_type=type(target)._meta.model_name,
        target_id=str(target.pk),
        target_repr=str(target)[:500],
        reason=reason,
        before=before,
        after=after,
        at=now or timezone.now(),
    )

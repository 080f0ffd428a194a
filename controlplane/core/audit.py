"""The audit trail: one append-only row per change made by a person or by the system.

The row's model lives in the circuits app (where its permissions and data live), which
registers it here in its ``AppConfig.ready()``: this base package knows no app. Every app
records through ``record_audit``.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Model
from django.utils import timezone

# actor_name of automatic actions (expiry, retention).
SYSTEM_ACTOR = "system"

# Longest reason an operator may give for a change (overrides, configs, silences), in
# characters: every API, form and page field of a reason states this one.
MAX_REASON_LENGTH = 1000

# Every app's audit actions (value -> label), registered in its AppConfig.ready().
_actions: dict[str, str] = {}

# The audit row's model, registered by the app that owns it.
_model: type[Model] | None = None


@dataclass(frozen=True)
class Target:
    """What an audit event is about when it is not one row (a table's history, say)."""

    type: str
    id: str
    repr: str


def register_model(model: type[Model]) -> None:
    """Name the model ``record_audit`` writes (the owning app calls this once, in ready())."""
    global _model
    _model = model


def audit_model() -> type[Model]:
    """The registered audit model; an error naming the missing registration otherwise."""
    if _model is None:
        raise RuntimeError("no audit model registered: call core.audit.register_model() in ready()")
    return _model


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
    team: str = "",
    now: datetime | None = None,
) -> Model:
    """Write one audit event (inside the caller's transaction); ``target`` is a model
    instance or a :class:`Target`. ``team`` names the team the change is about when it is
    not the service's (a membership); the service's team is recorded otherwise."""
    model = audit_model()
    repr_field = model._meta.get_field("target_repr")
    # Cut to the column (a model without the field's length would be a registration bug).
    repr_length = getattr(repr_field, "max_length", None)
    if isinstance(target, Target):
        kind, ident, text = target.type, target.id, target.repr
    else:
        kind, ident, text = type(target)._meta.model_name, str(target.pk), str(target)
    return model._default_manager.create(
        actor=actor,
        actor_name=actor_name(actor),
        action=action,
        service_id=service_id,
        team=team,
        target_type=kind,
        target_id=ident,
        target_repr=text[:repr_length],
        reason=reason,
        before=before,
        after=after,
        at=now or timezone.now(),
    )

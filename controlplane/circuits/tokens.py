"""Personal API tokens as their users manage them: create within one's own rights, list,
revoke. The command, the API and the dashboard page all go through here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from controlplane.circuits import access
from controlplane.circuits.auth import create_api_token, max_token_days
from controlplane.circuits.choices import AuditAction, TokenScope
from controlplane.circuits.models import APIToken, Team
from controlplane.core.audit import record_audit

# The permission a user needs (globally, or in the token's team) to give a token a scope:
# a token carries at most its user's rights.
SCOPE_NEEDS = {
    TokenScope.READ: "circuits.view_circuit",
    TokenScope.OPERATE: "circuits.override_circuit",
    TokenScope.ADMIN: "circuits.add_agenttoken",
}


def may_manage(user: User) -> bool:
    """Whether this request may create and revoke tokens: a session, or an admin-scope
    token (a narrower one must not mint or revoke others)."""
    through = access.token_of(user)
    return through is None or through.scope == TokenScope.ADMIN


@dataclass(frozen=True)
class TokenRequest:
    """What a user asks for: checked by :func:`check`."""

    scope: str
    team: str = ""  # a team's slug, "" for none
    days: int | None = None  # None: SWITCHYARD_API_TOKEN_MAX_DAYS
    label: str = ""


def check(user: User, wanted: TokenRequest) -> tuple[dict[str, str], Team | None]:
    """Errors by field (``scope``, ``team``, ``expires_in_days``) and the team asked for."""
    errors: dict[str, str] = {}
    if wanted.scope not in TokenScope.values:
        errors["scope"] = f"must be one of {', '.join(TokenScope.values)}"
    if wanted.days is not None and not 1 <= wanted.days <= max_token_days():
        errors["expires_in_days"] = f"must be 1-{max_token_days()} days"
    team = Team.objects.filter(slug=wanted.team).first() if wanted.team else None
    if wanted.team and team is None:
        errors["team"] = f"no team {wanted.team!r}"
    through = access.token_of(user)
    if (
        through is not None
        and through.team_id is not None
        and (team is None or team.pk != through.team_id)
    ):
        errors.setdefault("team", "a team's token creates tokens of that team only")
    if errors:
        return errors, team
    team_id = team.pk if team is not None else None
    if team_id is not None and not access.may(user, "circuits.view_team", team_id):
        return {"team": f"{wanted.team!r} is not one of your teams"}, team
    needed = SCOPE_NEEDS[TokenScope(wanted.scope)]
    allowed = access.may(user, needed, team_id) if team_id else access.may_somewhere(user, needed)
    if not allowed:
        where = f" in {wanted.team!r}" if team_id else ""
        return {"scope": f"{wanted.scope!r} is more than your rights{where}"}, team
    return {}, team


def create(
    user: User, wanted: TokenRequest, *, actor: User | None, now: datetime | None = None
) -> tuple[APIToken, str]:
    """Create a checked token and its audit event; returns the row and the secret."""
    errors, team = check(user, wanted)
    if errors:
        raise ValueError(errors)
    with transaction.atomic():
        token, raw = create_api_token(
            user, label=wanted.label[:100], scope=wanted.scope, team=team, days=wanted.days,
            now=now,
        )  # fmt: skip
        through = access.token_of(user)
        if through is not None and through.expires_at is not None:
            # Never outliving the token that made it.
            assert token.expires_at is not None
            if through.expires_at < token.expires_at:
                token.expires_at = through.expires_at
                token.save(update_fields=["expires_at"])
        record_audit(
            actor=actor,
            action=AuditAction.API_TOKEN_CREATE,
            target=token,
            after=describe(token),
            now=now,
        )
    return token, raw


def describe(token: APIToken) -> dict[str, str | None]:
    """What the audit trail records of a token (never its secret)."""
    return {
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "scope": token.scope,
        "team": token.team.slug if token.team is not None else None,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


def visible_to(user: User) -> QuerySet[APIToken]:
    """The tokens ``user`` sees: their own; every user's for an admin of users."""
    tokens = APIToken.objects.select_related("user", "team").order_by("-created_at", "-id")
    if access.has_global(user, "circuits.view_apitoken"):
        return tokens
    return tokens.filter(user=user)


def revoke(token: APIToken, *, actor: User, now: datetime | None = None) -> bool:
    """Revoke ``token`` with its audit event; False when it already was revoked."""
    now = now or timezone.now()
    with transaction.atomic():
        done = APIToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        if not done:
            return False
        token.revoked_at = now
        record_audit(
            actor=actor,
            action=AuditAction.API_TOKEN_REVOKE,
            target=token,
            before=describe(token),
            now=now,
        )
    return True

"""Who may do what on which service: the one place the API, the dashboard and the
WebSocket ask.

A global role (the groups of roles.py) grants its permissions on every service. A team
role (``Membership``) grants the same role's permissions on that team's services only;
a team admin also manages the team's members and its services' agent tokens. A service
without a team is reachable through the global roles only. The two add up: a global
viewer who operates team A forces A's circuits and reads every circuit.

A user's memberships are read once per request (one query, kept on the user object,
which lives as long as the request) and only when a global permission does not answer.

A request made with a personal API token (``act_through``) gets its user's permissions
cut by the token: by its scope (read: the ``view_*`` permissions; operate: those and
TEAM_OPERATE; admin: all of them) and, when the token names a team, to that team's
services (no global permission, no service without a team). Every check below applies
the cut, so the API, whatever asks through this module, cannot do more than the token.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from controlplane.circuits.choices import TeamRole, TokenScope
from controlplane.circuits.models import APIToken, Membership

# What each team role grants on its team's services (the global roles' permissions on
# those services' rows, see roles.py and alerts/roles.py).
TEAM_READ = frozenset(
    {
        "circuits.view_service",
        "circuits.view_circuit",
        "circuits.view_instance",
        "circuits.view_transition",
        "circuits.view_configversion",
        "circuits.view_override",
        "circuits.view_drill",
        "circuits.view_snapshot",
        "circuits.view_auditevent",
        "circuits.view_team",
        "alerts.view_alert",
        "alerts.view_silence",
    }
)
TEAM_OPERATE = frozenset(
    {
        "circuits.override_circuit",
        "circuits.edit_circuit_config",
        "circuits.run_drill",
        "alerts.acknowledge_alert",
        "alerts.add_silence",
        "alerts.change_silence",
        "alerts.delete_silence",
    }
)
TEAM_MANAGE = frozenset(
    {
        "circuits.view_agenttoken",
        "circuits.add_agenttoken",
        "circuits.change_agenttoken",
        "circuits.view_membership",
        "circuits.add_membership",
        "circuits.change_membership",
        "circuits.delete_membership",
    }
)
ROLE_PERMS: dict[str, frozenset[str]] = {
    TeamRole.VIEWER: TEAM_READ,
    TeamRole.OPERATOR: TEAM_READ | TEAM_OPERATE,
    TeamRole.ADMIN: TEAM_READ | TEAM_OPERATE | TEAM_MANAGE,
}

#: Teams whose services a user may act on: ``None`` for every service (a global role).
Scope = frozenset[int] | None


def act_through(user: Any, token: APIToken) -> None:
    """Cut ``user``'s permissions to ``token`` for the rest of the request."""
    user._api_token = token


def token_of(user: Any) -> APIToken | None:
    """The personal API token ``user`` acts through in this request, if any."""
    token: APIToken | None = getattr(user, "_api_token", None)
    return token


def scope_allows(token_scope: str, perm: str) -> bool:
    """Whether a token of scope ``token_scope`` may carry ``perm`` (its user permitting)."""
    if token_scope == TokenScope.ADMIN:
        return True
    if perm.partition(".")[2].startswith("view_"):
        return True
    return token_scope == TokenScope.OPERATE and perm in TEAM_OPERATE


def has_global(user: Any, perm: str) -> bool:
    """Whether ``user`` has ``perm`` on every service (a global role, not cut by a token)."""
    token = token_of(user)
    if token is not None and (token.team_id is not None or not scope_allows(token.scope, perm)):
        return False
    return bool(user.has_perm(perm))


def team_roles(user: Any) -> dict[int, str]:
    """The user's role per team id: one query, then kept on the user for the request."""
    roles: dict[int, str] | None = getattr(user, "_team_roles", None)
    if roles is None:
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
            roles = {}
        else:
            roles = dict(Membership.objects.filter(user_id=user.pk).values_list("team_id", "role"))
        user._team_roles = roles
    return roles


def forget_roles(user: Any) -> None:
    """Drop the roles kept on ``user`` (after its memberships changed)."""
    if hasattr(user, "_team_roles"):
        del user._team_roles


def scope(user: Any, perm: str) -> Scope:
    """Teams on whose services ``user`` has ``perm``; None when a global role grants it."""
    if has_global(user, perm):
        return None
    token = token_of(user)
    if token is not None:
        if not scope_allows(token.scope, perm):
            return frozenset()
        if token.team_id is not None:
            return frozenset({token.team_id}) if may(user, perm, token.team_id) else frozenset()
    return frozenset(team for team, role in team_roles(user).items() if perm in ROLE_PERMS[role])


def may_somewhere(user: Any, perm: str) -> bool:
    """Whether ``user`` has ``perm`` globally or on some team's services."""
    found = scope(user, perm)
    return found is None or bool(found)


def may(user: Any, perm: str, team_id: int | None) -> bool:
    """Whether ``user`` has ``perm`` on the services of ``team_id`` (None: no team)."""
    token = token_of(user)
    if token is not None:
        if not scope_allows(token.scope, perm):
            return False
        if token.team_id is not None and token.team_id != team_id:
            return False
    if user.has_perm(perm):
        return True
    if team_id is None:
        return False
    role = team_roles(user).get(team_id)
    return role is not None and perm in ROLE_PERMS[role]


def team_q(teams: Scope, path: str) -> Q:
    """Rows whose service's team (``path``, e.g. ``circuit__service__team``) is in
    ``teams``; everything for None."""
    if teams is None:
        return Q()
    return Q(**{f"{path}__in": teams})


def restrict(qs: QuerySet[Any], user: Any, perm: str, path: str) -> QuerySet[Any]:
    """``qs`` cut to the rows of services on which ``user`` has ``perm``."""
    teams = scope(user, perm)
    return qs if teams is None else qs.filter(team_q(teams, path))

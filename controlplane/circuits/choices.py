"""Named choices shared by models, the sync API and the operator API."""

import re

from django.db import models

from breakers import states


def _labelled(states: list[str]) -> list[tuple[str, tuple[str, str]]]:
    # Members named like the library's (HALF_OPEN), labelled "half open".
    return [(value.upper(), (value, value.replace("_", " "))) for value in states]


# Derived from the library's enums, so the server cannot drift from what agents send.
# (django-stubs does not type the functional API's ``module`` argument.)
CircuitState = models.TextChoices(
    "CircuitState",
    _labelled([s.value for s in states.CircuitState]),
    module=__name__,  # type: ignore[call-overload]
)
CircuitState.__doc__ = "A breaker's state as the library reports it (breakers.CircuitState)."

FleetState = models.TextChoices(
    "FleetState",
    _labelled([*(s.value for s in states.CircuitState), "unknown"]),
    module=__name__,  # type: ignore[call-overload]
)
FleetState.__doc__ = (
    "A circuit's state across its fleet: a CircuitState, or unknown with no live instance."
)


# Worst first: the fleet state is the first of these any live instance is in.
SEVERITY_ORDER: tuple[str, ...] = (
    CircuitState.FORCED_OPEN,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.FORCED_CLOSED,
    CircuitState.CLOSED,
)


OverrideState = models.TextChoices(
    "OverrideState",
    _labelled([s.value for s in states.FORCED_STATES]),
    module=__name__,  # type: ignore[call-overload]
)
OverrideState.__doc__ = "States an operator can force."


class OverrideEnd(models.TextChoices):
    """Why an override stopped applying."""

    RELEASED = "released", "released"
    EXPIRED = "expired", "expired"
    REPLACED = "replaced", "replaced"


class DrillEnd(models.TextChoices):
    """Why a drill stopped (controlplane/circuits/drills.py)."""

    COMPLETED = "completed", "ran to its end"
    STOPPED = "stopped", "ended early by an operator"


# Values only: Django labels them from the member name ("Failure Threshold").
TransitionReason = models.TextChoices(
    "TransitionReason",
    [(r.name, r.value) for r in states.TransitionReason],
    module=__name__,  # type: ignore[call-overload]
)
TransitionReason.__doc__ = "Why a breaker changed state (breakers.TransitionEvent.reason)."


class ConfigSource(models.TextChoices):
    """Who created a config version."""

    AGENT = "agent", "registered by an agent"
    OPERATOR = "operator", "edited by an operator"


class TeamRole(models.TextChoices):
    """A person's role in one team: the global roles' names, granted on that team's services."""

    VIEWER = "viewer", "viewer"
    OPERATOR = "operator", "operator"
    ADMIN = "admin", "admin"


class MembershipSource(models.TextChoices):
    """Who keeps a membership: a person (the API, the admin) or single sign-on, which adds,
    changes and removes its own at every sign-in and never touches the others (sso.py)."""

    MANUAL = "manual", "set by a person"
    SSO = "sso", "from single sign-on"


class TokenScope(models.TextChoices):
    """How much of its user's rights a personal API token carries (access.py)."""

    READ = "read", "read"
    OPERATE = "operate", "operate"
    ADMIN = "admin", "admin"


class AuditAction(models.TextChoices):
    """Actions that leave an audit event."""

    OVERRIDE_FORCE = "override.force", "force"
    OVERRIDE_RELEASE = "override.release", "release"
    OVERRIDE_EXPIRE = "override.expire", "override expired"
    CONFIG_CREATE = "config.create", "config version created"
    SHADOW_START = "shadow.start", "shadow evaluation started"
    SHADOW_STOP = "shadow.stop", "shadow evaluation stopped"
    AGENT_TOKEN_CREATE = "agent_token.create", "agent token created"
    AGENT_TOKEN_REVOKE = "agent_token.revoke", "agent token revoked"
    API_TOKEN_CREATE = "api_token.create", "API token created"
    API_TOKEN_REVOKE = "api_token.revoke", "API token revoked"
    HISTORY_RETENTION = "history.retention", "history removed by retention"
    TEAM_CREATE = "team.create", "team created"
    TEAM_UPDATE = "team.update", "team changed"
    TEAM_DELETE = "team.delete", "team deleted"
    MEMBERSHIP_SET = "membership.set", "team member added or role changed"
    MEMBERSHIP_REMOVE = "membership.remove", "team member removed"
    DRILL_START = "drill.start", "drill started"
    DRILL_END = "drill.end", "drill ended early"
    DRILL_COMPLETE = "drill.complete", "drill ran to its end"
    ROLE_GRANT = "role.grant", "global role granted"
    ROLE_REVOKE = "role.revoke", "global role taken away"
    ROLLOUT_START = "rollout.start", "canary rollout started"
    ROLLOUT_PROMOTE = "rollout.promote", "canary rollout promoted"
    ROLLOUT_ROLLBACK = "rollout.rollback", "canary rollout rolled back"


# Names of services, circuits and instances: 1-200 characters, starting with a letter,
# digit or underscore, then letters, digits and _ . : / @ + -  (no spaces).
NAME_MAX_LENGTH = 200
_NAME = rf"[A-Za-z0-9_][A-Za-z0-9_.:/@+\-]{{0,{NAME_MAX_LENGTH - 1}}}"
NAME_PATTERN = rf"^{_NAME}\Z"
NAME_RE = re.compile(NAME_PATTERN)
# The same rule in the OpenAPI schema's regex dialect (ECMA 262: no \Z).
NAME_SCHEMA_PATTERN = f"^{_NAME}$"

# Limits of what an agent reports, stated once for the sync's validation, the models and
# the OpenAPI schema: counters and ids fit PostgreSQL's bigint, pids and small counts
# its integer; free text is cut to its column.
MAX_COUNTER = 2**63 - 1
MAX_PID = 2**31 - 1
HOSTNAME_MAX_LENGTH = 255
LIBRARY_VERSION_MAX_LENGTH = 50
# A breaker's retry_after, seconds.
MAX_RETRY_AFTER = 1e9


class RolloutState(models.TextChoices):
    """Where a canary rollout is (docs/rollouts.md)."""

    ACTIVE = "active", "active"
    PROMOTED = "promoted", "promoted"
    ROLLED_BACK = "rolled_back", "rolled back"


class RolloutGroup(models.TextChoices):
    """The two groups of instances while a rollout runs."""

    CANARY = "canary", "canary"
    BASELINE = "baseline", "baseline"

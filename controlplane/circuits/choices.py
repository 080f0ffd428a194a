"""Named choices shared by models, the sync API and the operator API."""

import re

from django.db import models


class CircuitState(models.TextChoices):
    """A breaker's state as the library reports it (same strings as breakers.CircuitState)."""

    CLOSED = "closed", "closed"
    OPEN = "open", "open"
    HALF_OPEN = "half_open", "half open"
    FORCED_OPEN = "forced_open", "forced open"
    FORCED_CLOSED = "forced_closed", "forced closed"


class FleetState(models.TextChoices):
    """A circuit's state across its fleet: a CircuitState, or unknown with no live instance."""

    CLOSED = "closed", "closed"
    OPEN = "open", "open"
    HALF_OPEN = "half_open", "half open"
    FORCED_OPEN = "forced_open", "forced open"
    FORCED_CLOSED = "forced_closed", "forced closed"
    UNKNOWN = "unknown", "unknown"


# Worst first: the fleet state is the first of these any live instance is in.
SEVERITY_ORDER: tuple[str, ...] = (
    CircuitState.FORCED_OPEN,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.FORCED_CLOSED,
    CircuitState.CLOSED,
)


class OverrideState(models.TextChoices):
    """States an operator can force."""

    FORCED_OPEN = "forced_open", "forced open"
    FORCED_CLOSED = "forced_closed", "forced closed"


class OverrideEnd(models.TextChoices):
    """Why an override stopped applying."""

    RELEASED = "released", "released"
    EXPIRED = "expired", "expired"
    REPLACED = "replaced", "replaced"


class TransitionReason(models.TextChoices):
    """Why a breaker changed state (breakers.TransitionEvent.reason)."""

    FAILURE_THRESHOLD = "failure_threshold"
    FAILURE_RATE = "failure_rate"
    SLOW_CALL_RATE = "slow_call_rate"
    TIMEOUT_ELAPSED = "timeout_elapsed"
    PROBE_FAILED = "probe_failed"
    PROBES_SUCCEEDED = "probes_succeeded"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"
    RELEASED = "released"
    RESET = "reset"


class ConfigSource(models.TextChoices):
    """Who created a config version."""

    AGENT = "agent", "registered by an agent"
    OPERATOR = "operator", "edited by an operator"


class AuditAction(models.TextChoices):
    """Actions that leave an audit event."""

    OVERRIDE_FORCE = "override.force", "force"
    OVERRIDE_RELEASE = "override.release", "release"
    OVERRIDE_EXPIRE = "override.expire", "override expired"
    CONFIG_CREATE = "config.create", "config version created"
    AGENT_TOKEN_CREATE = "agent_token.create", "agent token created"
    AGENT_TOKEN_REVOKE = "agent_token.revoke", "agent token revoked"
    API_TOKEN_CREATE = "api_token.create", "API token created"
    API_TOKEN_REVOKE = "api_token.revoke", "API token revoked"


# Names of services, circuits and instances: 1-200 characters, starting with a letter,
# digit or underscore, then letters, digits and _ . : / @ + -  (no spaces).
NAME_MAX_LENGTH = 200
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/@+\-]{0,199}$"
NAME_RE = re.compile(NAME_PATTERN)

"""Rule kinds, registered by kind (one module each)."""

from typing import Any

from controlplane.alerts.rules.agent_silent import AgentSilent
from controlplane.alerts.rules.base import RuleKind
from controlplane.alerts.rules.failure_rate import FailureRate
from controlplane.alerts.rules.open_too_long import OpenTooLong
from controlplane.alerts.rules.trip_rise import TripRise

RULE_KINDS: dict[str, type[RuleKind]] = {
    kind.kind: kind for kind in (OpenTooLong, FailureRate, TripRise, AgentSilent)
}


def get_rule_kind(kind: str) -> type[RuleKind]:
    """The class of a rule kind; ValueError naming ``kind`` if there is none."""
    try:
        return RULE_KINDS[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(RULE_KINDS)}, got {kind!r}") from None


def params_errors(kind: str, params: Any) -> dict[str, str]:
    """Reasons per param for ``params`` of a rule of ``kind`` (empty when valid)."""
    if kind not in RULE_KINDS:
        return {"kind": f"must be one of {', '.join(RULE_KINDS)}"}
    return RULE_KINDS[kind].params_errors(params)

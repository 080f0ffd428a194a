"""failure_rate: the worst live instance's window failure rate above ``threshold``
for at least ``for`` seconds (the pending duration)."""

from datetime import datetime
from typing import Any

from django.db.backends.utils import CursorWrapper

from controlplane.alerts.rules.base import Param, RuleKind, ScopedRule, scope_sql
from controlplane.circuits.fleet import live_cutoff

SQL = """
INSERT INTO alert_match (rule_id, circuit_id, started_at, value, forced)
SELECT %(rule)s, s.circuit_id, %(now)s, MAX(s.failure_rate), 0
FROM circuits_snapshot s JOIN circuits_circuit c ON c.id = s.circuit_id
JOIN circuits_instance i ON i.id = s.instance_id
WHERE i.last_seen >= %(live)s AND s.failure_rate > %(threshold)s {scope}
GROUP BY s.circuit_id
"""


class FailureRate(RuleKind):
    """Failure rate above X (the seed's default: 50%) for a pending duration."""

    kind = "failure_rate"
    params = {
        "threshold": Param(0.5, 0.0, 1.0, "failure rate (0-1) above which the rule matches"),
        "for": Param(60, 0, 24 * 3600, "seconds the rate must stay above before firing"),
    }
    default_pending = 60

    @classmethod
    def collect(
        cls, cursor: CursorWrapper, rule: ScopedRule, params: dict[str, Any], now: datetime
    ) -> None:
        scope, scope_params = scope_sql(rule, "s.circuit_id")
        cursor.execute(
            SQL.format(scope=scope),
            {
                "rule": rule.pk,
                "now": now,
                "live": live_cutoff(now),
                "threshold": params["threshold"],
                **scope_params,
            },
        )

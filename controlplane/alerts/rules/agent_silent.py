"""agent_silent: instances that stopped syncing while their circuits kept reporting.

A circuit matches when an instance that reported it was last seen between
``lookback`` and ``after`` seconds ago, while another instance that reported the same
circuit is live (synced within the live window: the service is up and this agent went
quiet).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db.backends.utils import CursorWrapper

from controlplane.alerts.rules.base import Param, RuleKind, ScopedRule, scope_sql
from controlplane.circuits.fleet import live_cutoff

SQL = """
INSERT INTO alert_match (rule_id, circuit_id, started_at, value, forced)
SELECT %(rule)s, s.circuit_id, MIN(i.last_seen), COUNT(DISTINCT i.id), 0
FROM circuits_snapshot s
JOIN circuits_instance i ON i.id = s.instance_id
JOIN circuits_circuit c ON c.id = s.circuit_id
WHERE i.last_seen < %(silent)s AND i.last_seen >= %(lookback)s {scope}
  AND EXISTS (
      SELECT 1 FROM circuits_snapshot s2 JOIN circuits_instance i2 ON i2.id = s2.instance_id
      WHERE s2.circuit_id = s.circuit_id AND i2.last_seen >= %(live)s
  )
GROUP BY s.circuit_id
"""


class AgentSilent(RuleKind):
    """Agents that went silent while their circuits were still being reported."""

    kind = "agent_silent"
    params = {
        "after": Param(60, 1, 24 * 3600, "seconds without a sync before an agent is silent"),
        "lookback": Param(3600, 60, 30 * 24 * 3600, "instances silent longer are gone"),
    }

    @classmethod
    def params_errors(cls, given: Any) -> dict[str, str]:
        errors = super().params_errors(given)
        if not errors and isinstance(given, dict):
            full = cls.with_defaults(given)
            if full["lookback"] <= full["after"]:
                errors["lookback"] = "must be greater than after"
        return errors

    @classmethod
    def collect(
        cls, cursor: CursorWrapper, rule: ScopedRule, params: dict[str, Any], now: datetime
    ) -> None:
        scope, scope_params = scope_sql(rule, "s.circuit_id")
        cursor.execute(
            SQL.format(scope=scope),
            {
                "rule": rule.pk,
                "silent": now - timedelta(seconds=params["after"]),
                "lookback": now - timedelta(seconds=params["lookback"]),
                "live": live_cutoff(now),
                **scope_params,
            },
        )

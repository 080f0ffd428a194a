"""open_too_long: a circuit open (or half-open) for longer than ``duration`` seconds.

The episode starts at an instance's first trip after it was last closed, so a breaker
flapping OPEN -> HALF_OPEN -> OPEN keeps its start; the circuit's episode is the
earliest among its live instances that are open or half-open now. A circuit forced
open by an operator matches from the override's creation, labelled ``forced``; it
pages only with ``page_forced``. A forced-closed circuit never matches.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.backends.utils import CursorWrapper

from controlplane.alerts.rules.base import Param, RuleKind, ScopedRule, scope_sql
from controlplane.circuits.fleet import live_cutoff

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Per live instance that is open or half-open now (and not under an override): the
# start of its episode, the first trip since it was last closed. Also read by /metrics.
EPISODE_STARTS = """
SELECT s.circuit_id, COALESCE((
    SELECT MIN(t.at) FROM circuits_transition t
    WHERE t.circuit_id = s.circuit_id AND t.instance_id = s.instance_id
      AND t.to_state = 'open'
      AND t.at > COALESCE((
          SELECT MAX(t2.at) FROM circuits_transition t2
          WHERE t2.circuit_id = s.circuit_id AND t2.instance_id = s.instance_id
            AND t2.to_state IN ('closed', 'forced_closed')
      ), %(epoch)s)
), s.state_since, s.updated_at) AS started_at
FROM circuits_snapshot s JOIN circuits_circuit c ON c.id = s.circuit_id
JOIN circuits_instance i ON i.id = s.instance_id
WHERE i.last_seen >= %(live)s AND s.state IN ('open', 'half_open') {scope}
  AND NOT EXISTS (
      SELECT 1 FROM circuits_override o2
      WHERE o2.circuit_id = s.circuit_id AND o2.ended_at IS NULL
        AND (o2.expires_at IS NULL OR o2.expires_at > %(now)s)
  )
"""

FORCED_OPEN = """
SELECT o.circuit_id, o.created_at AS started_at
FROM circuits_override o JOIN circuits_circuit c ON c.id = o.circuit_id
WHERE o.ended_at IS NULL AND (o.expires_at IS NULL OR o.expires_at > %(now)s)
  AND o.state = 'forced_open' {scope}
"""

SQL = f"""
INSERT INTO alert_match (rule_id, circuit_id, started_at, value, forced)
SELECT %(rule)s, x.circuit_id, x.started_at, NULL, x.forced FROM (
    SELECT f.circuit_id, f.started_at, 1 AS forced FROM ({FORCED_OPEN}) f
    UNION ALL
    SELECT e.circuit_id, MIN(e.started_at) AS started_at, 0 AS forced
    FROM ({EPISODE_STARTS}) e GROUP BY e.circuit_id
) x
WHERE x.started_at <= %(cutoff)s
"""


class OpenTooLong(RuleKind):
    """A circuit open longer than T seconds (the seed's default: 5 minutes)."""

    kind = "open_too_long"
    params = {
        "duration": Param(300, 1, 7 * 24 * 3600, "seconds open before the alert fires"),
        "page_forced": Param(False, help="notify for circuits forced open by an operator"),
    }

    @classmethod
    def collect(
        cls, cursor: CursorWrapper, rule: ScopedRule, params: dict[str, Any], now: datetime
    ) -> None:
        scope, scope_params = scope_sql(rule)
        cursor.execute(
            SQL.format(scope=scope),
            {
                "rule": rule.pk,
                "now": now,
                "epoch": EPOCH,
                "live": live_cutoff(now),
                "cutoff": now - timedelta(seconds=params["duration"]),
                **scope_params,
            },
        )

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
#
# The first branch finds an episode whose last close was within RECENT_CLOSE of now
# (the usual case): both lookups then read a short `at` range of the circuit's history
# (the index on (circuit, at)). Otherwise the second branch searches the whole history,
# as the first would have if unbounded, so the result is the same either way; only
# episodes without a recent close pay for it.
RECENT_CLOSE = timedelta(days=1)
LAST_CLOSE = """
SELECT t2.at FROM circuits_transition t2
WHERE t2.circuit_id = s.circuit_id AND t2.instance_id = s.instance_id
  AND t2.to_state IN ('closed', 'forced_closed') {since}
ORDER BY t2.at DESC LIMIT 1
"""
FIRST_TRIP_AFTER = """
SELECT MIN(t.at) FROM circuits_transition t
WHERE t.circuit_id = s.circuit_id AND t.instance_id = s.instance_id
  AND t.to_state = 'open' {since} AND t.at > {after}
"""
RECENT = "AND {alias}.at > %(recent_close)s"
EPISODE_STARTS = (
    "SELECT s.circuit_id, COALESCE(("
    + FIRST_TRIP_AFTER.format(
        since=RECENT.format(alias="t"),
        after="(" + LAST_CLOSE.format(since=RECENT.format(alias="t2")) + ")",
    )
    + "), ("
    + FIRST_TRIP_AFTER.format(
        since="", after="COALESCE((" + LAST_CLOSE.format(since="") + "), %(epoch)s)"
    )
    + """), s.state_since, s.updated_at) AS started_at
FROM circuits_snapshot s JOIN circuits_circuit c ON c.id = s.circuit_id
JOIN circuits_instance i ON i.id = s.instance_id
WHERE i.last_seen >= %(live)s AND s.state IN ('open', 'half_open') {scope}
  AND NOT EXISTS (
      SELECT 1 FROM circuits_override o2
      WHERE o2.circuit_id = s.circuit_id AND o2.ended_at IS NULL
        AND (o2.expires_at IS NULL OR o2.expires_at > %(now)s)
  )
"""
)


def episode_params(now: datetime) -> dict[str, Any]:
    """The params EPISODE_STARTS reads besides ``live`` and the scope's."""
    return {"now": now, "epoch": EPOCH, "recent_close": now - RECENT_CLOSE}


FORCED_OPEN = """
SELECT o.circuit_id, o.created_at AS started_at
FROM circuits_override o JOIN circuits_circuit c ON c.id = o.circuit_id
WHERE o.ended_at IS NULL AND (o.expires_at IS NULL OR o.expires_at > %(now)s)
  AND o.state = 'forced_open' {scope}
"""

# The episodes are materialized so that their lookups run once per instance (the
# cutoff would otherwise be pushed into the grouping and evaluate them again).
SQL = f"""
WITH episode AS MATERIALIZED ({EPISODE_STARTS})
INSERT INTO alert_match (rule_id, circuit_id, started_at, value, forced)
SELECT %(rule)s, x.circuit_id, x.started_at, NULL, x.forced FROM (
    SELECT f.circuit_id, f.started_at, 1 AS forced FROM ({FORCED_OPEN}) f
    UNION ALL
    SELECT e.circuit_id, MIN(e.started_at) AS started_at, 0 AS forced
    FROM episode e GROUP BY e.circuit_id
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
                **episode_params(now),
                "live": live_cutoff(now),
                "cutoff": now - timedelta(seconds=params["duration"]),
                **scope_params,
            },
        )

"""trip_rise: more trips in the recent window than the circuit's own history explains.

With k trips (transitions to open, any instance) in the last ``window`` seconds and
b trips in the ``baseline`` seconds before that window, the expected count is
lambda = (b + 1) * window / baseline (one pseudo-trip keeps a quiet history from
giving lambda = 0). The rule matches when k >= ``min_count`` and the Poisson tail
P(X >= k | lambda) < ``p_value``. See docs/alerts.md.
"""

import math
from datetime import datetime, timedelta
from typing import Any

from django.db.backends.utils import CursorWrapper

from controlplane.alerts.rules.base import Param, RuleKind, ScopedRule, scope_sql

# Counts of candidates only: circuits with at least min_count trips in the window
# (the partial index transition_trip_idx serves both scans).
SQL = """
SELECT t.circuit_id,
       SUM(CASE WHEN t.at > %(recent)s THEN 1 ELSE 0 END) AS k,
       SUM(CASE WHEN t.at <= %(recent)s THEN 1 ELSE 0 END) AS b,
       MIN(CASE WHEN t.at > %(recent)s THEN t.at END) AS first_at
FROM circuits_transition t
WHERE t.to_state = 'open' AND t.at > %(since)s AND t.at <= %(now)s
  AND t.circuit_id IN (
      SELECT r.circuit_id FROM circuits_transition r JOIN circuits_circuit c ON c.id = r.circuit_id
      WHERE r.to_state = 'open' AND r.at > %(recent)s AND r.at <= %(now)s {scope}
      GROUP BY r.circuit_id HAVING COUNT(*) >= %(min_count)s
  )
GROUP BY t.circuit_id
"""

INSERT = (
    "INSERT INTO alert_match (rule_id, circuit_id, started_at, value, forced) "
    "VALUES (%s, %s, %s, %s, 0)"
)


def expected_trips(baseline_trips: int, window: float, baseline: float) -> float:
    """lambda: the trips expected in ``window`` from ``baseline_trips`` in ``baseline``."""
    return (baseline_trips + 1) * window / baseline


def poisson_tail(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    term = math.exp(-lam)
    cdf = term
    for i in range(1, k):
        term *= lam / i
        cdf += term
    return max(0.0, 1.0 - cdf)


class TripRise(RuleKind):
    """An unusual rise in trips against the circuit's trailing baseline."""

    kind = "trip_rise"
    params = {
        "window": Param(300, 10, 24 * 3600, "recent window, seconds"),
        "baseline": Param(86400, 60, 90 * 86400, "trailing history before the window, seconds"),
        "min_count": Param(3, 1, 1_000_000, "fewest trips in the window that can match"),
        "p_value": Param(0.001, 0.0, 0.5, "match when P(X >= k) is below this"),
    }

    @classmethod
    def collect(
        cls, cursor: CursorWrapper, rule: ScopedRule, params: dict[str, Any], now: datetime
    ) -> None:
        scope, scope_params = scope_sql(rule, "r.circuit_id")
        recent = now - timedelta(seconds=params["window"])
        cursor.execute(
            SQL.format(scope=scope),
            {
                "recent": recent,
                "since": recent - timedelta(seconds=params["baseline"]),
                "now": now,
                "min_count": params["min_count"],
                **scope_params,
            },
        )
        rows = []
        for circuit_id, k, b, first_at in cursor.fetchall():
            lam = expected_trips(int(b), params["window"], params["baseline"])
            p = poisson_tail(int(k), lam)
            if p < params["p_value"]:
                rows.append((rule.pk, circuit_id, first_at, float(k)))
        if rows:
            cursor.executemany(INSERT, rows)

"""trip_rise: more trips in the recent window than the circuit's own history explains.

With k trips (transitions to open, any instance) in the last ``window`` seconds W, the
expected count lambda comes from one of two baselines:

- **Same hour of the week**, for a circuit known (its ``created_at``) since before the
  earliest window it reads: the b trips in the ``weeks`` windows of length W that end
  exactly 1, 2, ..., ``weeks`` weeks (7 x 24 h, UTC) before now, and
  lambda = (b + 1) * W / (weeks * W) = (b + 1) / weeks.
- **Trailing**, for a younger circuit: the b trips in the ``baseline`` seconds B before
  the window, and lambda = (b + 1) * W / B.

One pseudo-trip keeps a quiet history from giving lambda = 0. The rule matches when
k >= ``min_count`` and the Poisson tail P(X >= k | lambda) < ``p_value``.

The weekly windows have the window's own length and alignment rather than a wider
hour-of-week slot: trips that recur at a time of the week (a Monday 9:00 batch job)
are often bunched into a few minutes, and an hour-wide slot would spread them over the
hour and expect a twelfth of them in a 5-minute window, so the recurring burst would
itself look improbable. Aligned windows compare like with like, each past week one
sample of the same span; the price is a small exposure (``weeks`` x W), so the
pseudo-trip weighs 1 / ``weeks`` per window and a quiet circuit needs one more trip to
match than against a day of trailing history. A circuit's ``created_at`` is when an
agent first registered it: no week before that was observed, so a quiet week then is
no evidence. See docs/alerts.md.
"""

import math
from datetime import datetime, timedelta
from typing import Any

from django.db.backends.utils import CursorWrapper

from controlplane.alerts.rules.base import Param, RuleKind, ScopedRule, scope_sql

WEEK = timedelta(days=7)

# Candidates are the circuits with at least min_count trips in the window (the partial
# index transition_trip_idx on (at, circuit) WHERE to_state = 'open' serves that scan);
# only the baseline each is judged on is counted: {same_hour} is a sum of TRIPS_BETWEEN,
# one per past week, for a circuit registered before them, {trailing} one TRIPS_BETWEEN
# over the trailing baseline otherwise. Each reads a plain `at` range of one circuit
# (an index range scan of transition_history_idx or transition_trip_idx), with constant
# bounds so that a table partitioned by `at` reads only the partitions holding them.
SQL = """
SELECT m.circuit_id, m.k, m.first_at, m.weekly,
       CASE WHEN m.weekly THEN {same_hour} ELSE {trailing} END AS b
FROM (
    SELECT r.circuit_id, COUNT(*) AS k, MIN(r.at) AS first_at,
           MIN(c.created_at) <= %(history_since)s AS weekly
    FROM circuits_transition r JOIN circuits_circuit c ON c.id = r.circuit_id
    WHERE r.to_state = 'open' AND r.at > %(recent)s AND r.at <= %(now)s {scope}
    GROUP BY r.circuit_id
    HAVING COUNT(*) >= %(min_count)s
) m
"""

TRIPS_BETWEEN = """(
    SELECT COUNT(*) FROM circuits_transition t
    WHERE t.circuit_id = m.circuit_id AND t.to_state = 'open'
      AND t.at > %({start})s AND t.at <= %({end})s
)"""

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


def weekly_windows(now: datetime, window: float, weeks: int) -> list[tuple[datetime, datetime]]:
    """The (start, end] of the window of length ``window`` seconds ending ``now``, moved
    back 1..``weeks`` weeks."""
    span = timedelta(seconds=window)
    return [(now - k * WEEK - span, now - k * WEEK) for k in range(1, weeks + 1)]


class TripRise(RuleKind):
    """An unusual rise in trips against the same hour of past weeks, or the trailing
    baseline for a circuit younger than those weeks."""

    kind = "trip_rise"
    params = {
        "window": Param(300, 10, 24 * 3600, "recent window, seconds"),
        "baseline": Param(
            86400, 60, 90 * 86400, "trailing history before the window, seconds (young circuits)"
        ),
        "weeks": Param(4, 1, 12, "past weeks whose same window is the baseline", integer=True),
        "min_count": Param(3, 1, 1_000_000, "fewest trips in the window that can match"),
        "p_value": Param(0.001, 0.0, 0.5, "match when P(X >= k) is below this"),
    }

    @classmethod
    def collect(
        cls, cursor: CursorWrapper, rule: ScopedRule, params: dict[str, Any], now: datetime
    ) -> None:
        scope, scope_params = scope_sql(rule, "r.circuit_id")
        window, weeks = float(params["window"]), int(params["weeks"])
        recent = now - timedelta(seconds=window)
        ranges = weekly_windows(now, window, weeks)
        bounds: dict[str, Any] = {}
        for k, (start, end) in enumerate(ranges):
            bounds[f"week{k}_start"], bounds[f"week{k}_end"] = start, end
        same_hour = " + ".join(
            TRIPS_BETWEEN.format(start=f"week{k}_start", end=f"week{k}_end")
            for k in range(len(ranges))
        )
        trailing = TRIPS_BETWEEN.format(start="since", end="recent")
        cursor.execute(
            SQL.format(scope=scope, same_hour=same_hour, trailing=trailing),
            {
                "recent": recent,
                "since": recent - timedelta(seconds=params["baseline"]),
                "now": now,
                "history_since": ranges[-1][0],
                "min_count": params["min_count"],
                **bounds,
                **scope_params,
            },
        )
        rows = []
        for circuit_id, k, first_at, weekly_baseline, b in cursor.fetchall():
            baseline = weeks * window if weekly_baseline else params["baseline"]
            lam = expected_trips(int(b), window, baseline)
            if poisson_tail(int(k), lam) < params["p_value"]:
                rows.append((rule.pk, circuit_id, first_at, float(k)))
        if rows:
            cursor.executemany(INSERT, rows)

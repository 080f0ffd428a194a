"""Alert evaluation: one cycle over every enabled rule and every circuit, in SQL.

Each rule kind adds its current matches to a temporary table (set-based, no query per
circuit); then a few statements move every alert along its lifecycle at once:

1. a pending alert for each match without an open alert (the partial UNIQUE
   constraint makes two concurrent cycles insert one, ON CONFLICT DO NOTHING);
2. pending -> firing once the match has lasted the rule's pending duration;
3. open alerts without a match -> resolved;
4. notification rows: the first for a firing alert (unless silenced, acknowledged or
   forced open on a rule that does not page for that), repeats after the rule's
   repeat interval, and "resolved" for every alert whose firing was notified.

Every step is a conditional UPDATE or an INSERT guarded by a constraint, so racing
cycles change each row once. Deliveries are enqueued after the commit.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from controlplane.alerts import events
from controlplane.alerts.models import AlertRule
from controlplane.alerts.rules import RULE_KINDS

logger = logging.getLogger(__name__)

# "Not silenced" for an alert ``a`` (its circuit's service looked up by id).
NOT_SILENCED = """
NOT EXISTS (
    SELECT 1 FROM alerts_silence si
    WHERE si.starts_at <= %(now)s AND si.expires_at > %(now)s
      AND (si.rule_id IS NULL OR si.rule_id = a.rule_id)
      AND (si.circuit_id IS NULL OR si.circuit_id = a.circuit_id)
      AND (si.service_id IS NULL OR si.service_id = (
          SELECT c.service_id FROM circuits_circuit c WHERE c.id = a.circuit_id))
)
"""

MATCHED = """
EXISTS (SELECT 1 FROM alert_match m WHERE m.rule_id = a.rule_id AND m.circuit_id = a.circuit_id)
"""

CREATE_PENDING = """
INSERT INTO alerts_alert (rule_id, circuit_id, status, started_at, value, forced,
                          notify_round, created_at)
SELECT m.rule_id, m.circuit_id, 'pending', m.started_at, m.value, {forced}, 0, %(now)s
FROM alert_match m
WHERE NOT EXISTS (
    SELECT 1 FROM alerts_alert a WHERE a.rule_id = m.rule_id AND a.circuit_id = m.circuit_id
      AND a.status IN ('pending', 'firing'))
ORDER BY m.rule_id, m.circuit_id
ON CONFLICT (rule_id, circuit_id) WHERE status IN ('pending', 'firing') DO NOTHING
"""

REFRESH_VALUES = """
UPDATE alerts_alert SET value = m.value, forced = {forced}
FROM alert_match m
WHERE alerts_alert.rule_id = m.rule_id AND alerts_alert.circuit_id = m.circuit_id
  AND alerts_alert.status IN ('pending', 'firing')
  AND (alerts_alert.value IS DISTINCT FROM m.value OR alerts_alert.forced <> {forced})
"""

PROMOTE = f"""
UPDATE alerts_alert AS a SET status = 'firing', fired_at = %(now)s
WHERE a.status = 'pending' AND a.rule_id = %(rule)s AND a.started_at <= %(cutoff)s
  AND {MATCHED}
"""

RESOLVE = f"""
UPDATE alerts_alert AS a SET status = 'resolved', resolved_at = %(now)s
WHERE a.status IN ('pending', 'firing') AND NOT {MATCHED} {{skip}}
"""

FIRST_NOTICE = f"""
UPDATE alerts_alert AS a SET last_notified_at = %(now)s, notify_round = 1
WHERE a.status = 'firing' AND a.rule_id = %(rule)s AND a.last_notified_at IS NULL
  AND a.acknowledged_at IS NULL {{forced}} AND {NOT_SILENCED}
"""

REPEAT_NOTICE = f"""
UPDATE alerts_alert AS a SET last_notified_at = %(now)s, notify_round = a.notify_round + 1
WHERE a.status = 'firing' AND a.rule_id = %(rule)s AND a.last_notified_at <= %(cutoff)s
  AND a.acknowledged_at IS NULL AND {NOT_SILENCED}
"""

NOTIFY_FIRING = """
INSERT INTO alerts_notification (alert_id, channel_id, event, round, status, claim_token,
                                 attempts, last_error, created_at)
SELECT a.id, rc.channel_id, 'firing', a.notify_round, 'pending', '', 0, '', %(now)s
FROM alerts_alert a
JOIN alerts_alertrule_channels rc ON rc.alertrule_id = a.rule_id
JOIN alerts_channel ch ON ch.id = rc.channel_id
WHERE a.status = 'firing' AND a.last_notified_at = %(now)s AND ch.enabled
ORDER BY a.id, rc.channel_id
ON CONFLICT (alert_id, channel_id, event, round) DO NOTHING
"""

NOTIFY_RESOLVED = """
INSERT INTO alerts_notification (alert_id, channel_id, event, round, status, claim_token,
                                 attempts, last_error, created_at)
SELECT a.id, rc.channel_id, 'resolved', 0, 'pending', '', 0, '', %(now)s
FROM alerts_alert a
JOIN alerts_alertrule_channels rc ON rc.alertrule_id = a.rule_id
JOIN alerts_channel ch ON ch.id = rc.channel_id
WHERE a.status = 'resolved' AND a.resolved_at = %(now)s AND a.last_notified_at IS NOT NULL
  AND ch.enabled
ORDER BY a.id, rc.channel_id
ON CONFLICT (alert_id, channel_id, event, round) DO NOTHING
"""


@dataclass
class EvaluationResult:
    """What one cycle did (ids of rows it created or changed)."""

    now: datetime
    matches: int = 0
    created: int = 0
    fired: int = 0
    resolved: int = 0
    notifications: list[int] = field(default_factory=list)
    failed_rules: list[int] = field(default_factory=list)


def _create_match_table(cursor: CursorWrapper) -> None:
    if connection.vendor == "postgresql":
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS alert_match (rule_id bigint, circuit_id bigint, "
            "started_at timestamptz, value double precision, forced integer) ON COMMIT DROP"
        )
    else:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS alert_match (rule_id integer, circuit_id integer, "
            "started_at datetime, value real, forced integer)"
        )
    # Left over when the cycle runs inside an outer transaction (tests, nested callers).
    cursor.execute("DELETE FROM alert_match")
    cursor.execute(
        "CREATE INDEX IF NOT EXISTS alert_match_key ON alert_match (rule_id, circuit_id)"
    )


def _forced_expr() -> str:
    return "(m.forced = 1)" if connection.vendor == "postgresql" else "m.forced"


def _collect(cursor: CursorWrapper, rules: list[AlertRule], now: datetime) -> list[int]:
    failed = []
    for rule in rules:
        kind = RULE_KINDS.get(rule.kind)
        try:
            if kind is None:
                raise ValueError(f"unknown rule kind {rule.kind!r}")
            with transaction.atomic():  # a savepoint: one broken rule spoils no other
                kind.collect(cursor, rule, rule.full_params(), now)
        except Exception:
            logger.exception("alert rule %s (%s) could not be evaluated", rule.pk, rule.kind)
            failed.append(rule.pk)
    return failed


def _run(cursor: CursorWrapper, sql: str, params: dict[str, Any]) -> int:
    cursor.execute(sql, params)
    return cursor.rowcount


def evaluate(now: datetime | None = None) -> EvaluationResult:
    """Run one evaluation cycle at ``now`` over every enabled rule; see the module doc."""
    now = now or timezone.now()
    result = EvaluationResult(now=now)
    rules = list(AlertRule.objects.filter(enabled=True).order_by("pk"))
    p: dict[str, Any] = {"now": now}
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The cycle's statements are many short index lookups whose summed cost
            # estimates pass jit_above_cost: compiling them took longer than running them.
            cursor.execute("SET LOCAL jit = off")
        _create_match_table(cursor)
        result.failed_rules = _collect(cursor, rules, now)
        cursor.execute("SELECT COUNT(*) FROM alert_match")
        result.matches = int(cursor.fetchone()[0])
        forced = _forced_expr()
        result.created = _run(cursor, CREATE_PENDING.format(forced=forced), p)
        _run(cursor, REFRESH_VALUES.format(forced=forced), p)
        for rule in rules:
            params = rule.full_params()
            pending = RULE_KINDS[rule.kind].pending_for(params) if rule.kind in RULE_KINDS else 0
            cutoff = now - timedelta(seconds=pending)
            result.fired += _run(cursor, PROMOTE, {**p, "rule": rule.pk, "cutoff": cutoff})
        skip = ""
        if result.failed_rules:
            failed = ", ".join(str(int(i)) for i in result.failed_rules)
            skip = f"AND a.rule_id NOT IN ({failed})"
        result.resolved = _run(cursor, RESOLVE.format(skip=skip), p)
        for rule in rules:
            pages_forced = bool(rule.full_params().get("page_forced", False))
            only_paging = "" if pages_forced else "AND NOT a.forced"
            _run(cursor, FIRST_NOTICE.format(forced=only_paging), {**p, "rule": rule.pk})
            if rule.repeat_interval:
                cutoff = now - timedelta(seconds=rule.repeat_interval)
                _run(cursor, REPEAT_NOTICE, {**p, "rule": rule.pk, "cutoff": cutoff})
        _run(cursor, NOTIFY_FIRING, p)
        _run(cursor, NOTIFY_RESOLVED, p)
        cursor.execute(
            "SELECT id FROM alerts_notification WHERE created_at = %(now)s ORDER BY id", p
        )
        result.notifications = [row[0] for row in cursor.fetchall()]
        events.publish_changes(now)
    return result


def due_notifications(now: datetime | None = None, *, claim_ttl: float) -> list[int]:
    """Pending notifications nobody holds: never claimed, released for a retry that is
    due, or whose claim expired (its worker died); the sweeper enqueues them again."""
    from django.db.models import Q

    from controlplane.alerts.models import Notification

    now = now or timezone.now()
    expired = now - timedelta(seconds=claim_ttl)
    return list(
        Notification.objects.filter(status="pending")
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=expired))
        .order_by("id")
        .values_list("id", flat=True)[:10_000]
    )

"""The config estimate's replay (controlplane/circuits/whatif.py) on known bucket sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from breakers.latency import bucket_index
from controlplane.circuits.whatif import Bucket, estimate, recent_buckets, replay

HOUR = 3600.0


def buckets(spec: list[tuple[int, int]], start: float = 0.0, **latency: Any) -> list[Bucket]:
    """Consecutive 10-second buckets of (calls, failures)."""
    return [
        Bucket(start + 10 * i, calls, failures, latency.get("latency", {}))
        for i, (calls, failures) in enumerate(spec)
    ]


def test_no_traffic_opens_nothing() -> None:
    result = replay([], {}, HOUR)
    assert (result.opens, result.calls, result.buckets, result.open_seconds) == (0, 0, 0, 0.0)
    assert replay(buckets([(0, 0)] * 20), {}, HOUR).opens == 0


def test_healthy_traffic_stays_closed_until_the_threshold_is_below_its_failure_share() -> None:
    hour = buckets([(50, 2)] * 360)  # 4 % of calls fail, all hour
    assert replay(hour, {}, HOUR).opens == 0  # default: 50 %
    strict = replay(hour, {"failure_rate_threshold": 0.03}, HOUR)
    # Trips after bucket 0, skips the three buckets of the 30 s timeout, the probes of
    # bucket 4 succeed ((0.96)**3 > 0.5), the fresh window trips again after bucket 5: one
    # trip every 5 buckets.
    assert strict.opens == 72
    assert strict.calls == 360 * 50 and strict.buckets == 360


def test_an_outage_with_the_current_and_a_shorter_timeout() -> None:
    seq = [(10, 0)] * 10 + [(10, 10)] * 6 + [(10, 0)] * 20
    # Default: opens after bucket 10, the probe of bucket 14 fails (opens again), the
    # probe of bucket 18 closes.
    current = replay(buckets(seq), {}, HOUR)
    assert current.opens == 2
    # 5 s: every failed bucket after the first one is a failed probe, bucket 16 closes.
    short = replay(buckets(seq), {"timeout": 5.0, "max_timeout": 300.0}, HOUR)
    assert short.opens == 6
    # Open from the end of bucket 10 (110 s) to the probe (140 s), and from the end of
    # bucket 14 (150 s) to the next probe (180 s).
    assert current.open_seconds == pytest.approx(60.0)


def test_consecutive_failures_add_up_only_across_buckets_that_failed_whole() -> None:
    # The rates never trip: minimum_calls is out of reach.
    cfg = {"failure_threshold": 5, "minimum_calls": 1000, "sliding_window_size": 1000}
    assert replay(buckets([(3, 3), (3, 3)]), cfg, HOUR).opens == 1  # 3 + 3 >= 5
    assert replay(buckets([(3, 3), (3, 2), (3, 3)]), cfg, HOUR).opens == 0  # a success between
    assert replay(buckets([(3, 3), (0, 0), (3, 3)]), cfg, HOUR).opens == 1  # an empty bucket


def test_count_window_counts_the_newest_calls_and_minimum_calls() -> None:
    cfg = {"sliding_window_size": 20, "minimum_calls": 20, "failure_threshold": 1000}
    # 10 calls per bucket, 6 failures: the rate is there but the window needs 20 calls.
    assert replay(buckets([(10, 6)]), cfg, HOUR).opens == 0
    assert replay(buckets([(10, 6), (10, 6)]), cfg, HOUR).opens == 1
    # A bad bucket long ago falls out of the 20-call window: 100 good calls since.
    assert replay(buckets([(10, 9), (100, 0)]), cfg, HOUR).opens == 0
    # minimum_calls above the count window's size is capped at the size.
    capped = {"sliding_window_size": 5, "minimum_calls": 50, "failure_threshold": 1000}
    assert replay(buckets([(10, 6)]), capped, HOUR).opens == 1


def test_time_window_holds_the_buckets_of_its_duration() -> None:
    cfg = {"window_type": "time", "window_duration": 60.0, "minimum_calls": 30}
    cfg["failure_threshold"] = 1000
    seq = [(5, 3)] * 6  # 30 calls in the sixth bucket
    assert replay(buckets(seq[:5]), cfg, HOUR).opens == 0
    assert replay(buckets(seq), cfg, HOUR).opens == 1
    # Older buckets fall out: 6 bad buckets spread over 10 minutes never fill the window.
    spread = [b for i in range(6) for b in buckets([(5, 3)], start=100.0 * i)]
    assert replay(spread, cfg, HOUR).opens == 0
    # A window shorter than a bucket counts part of it: 5 of the bucket's 10 calls.
    half = {**cfg, "window_duration": 5.0, "minimum_calls": 5}
    assert replay(buckets([(10, 6)]), half, HOUR).opens == 1
    assert replay(buckets([(10, 6)]), {**half, "minimum_calls": 6}, HOUR).opens == 0


def test_slow_calls_come_from_the_latency_histogram() -> None:
    slow = {bucket_index(2.0): 8, bucket_index(0.01): 2}  # 8 of 10 calls took 2 s
    seq = [Bucket(0.0, 10, 0, slow)]
    base = {"slow_call_rate_threshold": 0.5}
    assert replay(seq, base, HOUR).opens == 0  # detection off (no slow_call_duration)
    assert replay(seq, {**base, "slow_call_duration": 1.0}, HOUR).opens == 1
    assert replay(seq, {**base, "slow_call_duration": 3.0}, HOUR).opens == 0
    assert seq[0].slow(1.0) == 8 and seq[0].slow(None) == 0


def test_the_open_timeout_grows_with_the_multiplier() -> None:
    down = buckets([(10, 10)] * 60)  # ten minutes of failures
    flat = replay(down, {"timeout": 10.0, "max_timeout": 300.0}, HOUR)
    grown = replay(down, {"timeout": 10.0, "timeout_multiplier": 2.0, "max_timeout": 80}, HOUR)
    # 10 s: a failed probe every other bucket; doubling: 10, 20, 40, 80, 80, ... s.
    assert flat.opens == 30
    assert grown.opens < flat.opens
    assert grown.opens == 1 + 1 + 1 + 1 + (600 - 10 - 20 - 30 - 50 - 90) // 90 + 1


def test_still_open_at_the_end_counts_open_time_up_to_the_end() -> None:
    seq = buckets([(10, 10)])  # opens at 10 s, no call after
    result = replay(seq, {}, 100.0)
    assert result.opens == 1 and result.open_seconds == pytest.approx(90.0)


def test_bucket_order_does_not_matter() -> None:
    seq = buckets([(10, 0)] * 10 + [(10, 10)] * 6 + [(10, 0)] * 20)
    assert replay(list(reversed(seq)), {}, HOUR) == replay(seq, {}, HOUR)


def test_estimate_replays_both_configs_over_the_same_buckets() -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    start = now.timestamp() - 600
    seq = buckets([(10, 0)] * 10 + [(10, 10)] * 6 + [(10, 0)] * 20, start=start)
    result = estimate(0, {}, {"timeout": 5.0}, now=now, buckets=seq)
    assert (result.current.opens, result.new.opens) == (2, 6)
    assert result.has_traffic and result.end - result.start == timedelta(hours=1)
    assert not estimate(0, None, {}, now=now, buckets=[]).has_traffic


@pytest.mark.django_db
def test_recent_buckets_reads_the_last_hour_of_the_circuit(service: Any) -> None:
    from controlplane.circuits.models import Circuit, Traffic10s

    circuit = Circuit.objects.create(service=service, name="payments")
    other = Circuit.objects.create(service=service, name="db")
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    for minutes in (5, 59, 61):
        Traffic10s.objects.create(
            circuit=circuit,
            bucket=now - timedelta(minutes=minutes),
            calls=10,
            failures=minutes,
            latency={str(bucket_index(0.5)): 10},
        )
    Traffic10s.objects.create(circuit=other, bucket=now - timedelta(minutes=1), calls=7)
    rows = recent_buckets(circuit.pk, now - timedelta(hours=1), now)
    assert sorted(b.failures for b in rows) == [5, 59]
    assert rows[0].latency == {bucket_index(0.5): 10}

"""The latency buckets: bounds, representative values, percentiles, merging."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from breakers.latency import (
    BUCKET_COUNT,
    INDEX_OFFSET,
    INDEX_SCALE,
    LATENCY_MAX,
    LATENCY_MIN,
    LATENCY_RATIO,
    bucket_bounds,
    bucket_index,
    bucket_value,
    merge,
    percentile,
    percentiles,
)

LAST = BUCKET_COUNT - 1
durations = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
bounded = st.floats(min_value=LATENCY_MIN, max_value=LATENCY_MAX, exclude_max=True)
histograms = st.dictionaries(st.integers(0, LAST), st.integers(0, 10**12), max_size=40)


def test_the_buckets_tile_zero_to_infinity_at_the_ratio():
    assert BUCKET_COUNT == 142
    assert bucket_bounds(0) == (0.0, LATENCY_MIN)
    assert bucket_bounds(LAST) == (LATENCY_MAX, math.inf)
    for i in range(1, BUCKET_COUNT):
        assert bucket_bounds(i)[0] == bucket_bounds(i - 1)[1]
    for i in range(1, LAST):
        lower, upper = bucket_bounds(i)
        assert lower == pytest.approx(LATENCY_MIN * LATENCY_RATIO ** (i - 1), rel=1e-12)
        if i < LAST - 1:  # the one before the last is cut at LATENCY_MAX
            assert upper / lower == pytest.approx(LATENCY_RATIO, rel=1e-12)


def test_each_bound_belongs_to_its_bucket_and_the_float_below_to_the_one_before():
    for i in range(1, BUCKET_COUNT):
        lower = bucket_bounds(i)[0]
        assert bucket_index(lower) == i
        assert bucket_index(math.nextafter(lower, 0.0)) == i - 1


def test_edges_and_odd_values():
    assert bucket_index(0.0) == 0
    assert bucket_index(-1.0) == 0
    assert bucket_index(math.nan) == 0
    assert bucket_index(LATENCY_MIN) == 1
    assert bucket_index(LATENCY_MAX) == LAST
    assert bucket_index(math.inf) == LAST
    assert bucket_value(0) == LATENCY_MIN
    assert bucket_value(LAST) == LATENCY_MAX


@given(durations)
def test_a_duration_lies_inside_the_bounds_of_its_bucket(seconds):
    lower, upper = bucket_bounds(bucket_index(seconds))
    assert lower <= seconds < upper


@given(bounded)
def test_the_bucket_value_is_within_5_percent_of_every_duration_in_it(seconds):
    i = bucket_index(seconds)
    assert 1 <= i < LAST
    assert abs(bucket_value(i) - seconds) / seconds <= 0.05
    # The closed formula the fast paths inline gives the same index.
    assert int(math.log(seconds) * INDEX_SCALE + INDEX_OFFSET) == i


@given(histograms, histograms, histograms)
def test_merge_adds_bucket_by_bucket(a, b, c):
    merged = merge(a, b)
    assert merged == {i: n for i, n in (Counter(a) + Counter(b)).items() if n}
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert all(n > 0 for n in merged.values())


@given(st.lists(bounded, min_size=1, max_size=300), st.floats(0.0, 1.0))
def test_a_percentile_is_within_5_percent_of_the_exact_one(samples, q):
    counts = Counter(bucket_index(s) for s in samples)
    ordered = sorted(samples)
    exact = ordered[max(1, math.ceil(q * len(ordered))) - 1]  # nearest rank
    estimate = percentile(counts, q)
    assert estimate is not None
    assert abs(estimate - exact) / exact <= 0.05


@given(st.lists(bounded, min_size=2, max_size=200), st.lists(bounded, min_size=1, max_size=200))
def test_merged_histograms_give_the_percentiles_of_all_samples(first, second):
    a = Counter(bucket_index(s) for s in first)
    b = Counter(bucket_index(s) for s in second)
    everything = Counter(bucket_index(s) for s in first + second)
    for q in (0.5, 0.9, 0.99):
        assert percentile(merge(a, b), q) == percentile(everything, q)


def test_percentile_ends_and_empty_histograms():
    assert percentile({}, 0.5) is None
    assert percentile({3: 0}, 0.5) is None
    counts = {5: 1, 50: 98, 100: 1}
    assert percentile(counts, 0.0) == bucket_value(5)
    assert percentile(counts, 0.5) == bucket_value(50)
    assert percentile(counts, 1.0) == bucket_value(100)


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan, "0.5", None, True])
def test_a_bad_q_is_named(q):
    with pytest.raises(ValueError, match=r"^q must be a number between 0 and 1"):
        percentile({1: 1}, q)


@pytest.mark.parametrize(
    "counts", [{-1: 1}, {BUCKET_COUNT: 1}, {"3": 1}, {3: -1}, {3: 1.5}, [(3, 1)]]
)
def test_bad_counts_are_named(counts):
    with pytest.raises(ValueError, match=r"^counts"):
        percentile(counts, 0.5)
    with pytest.raises(ValueError, match=r"^a"):
        merge(counts, {})


@pytest.mark.parametrize("i", [-1, BUCKET_COUNT, 1.0, True])
def test_a_bad_index_is_named(i):
    with pytest.raises(ValueError, match=r"^i must be a bucket index"):
        bucket_bounds(i)
    with pytest.raises(ValueError, match=r"^i must be a bucket index"):
        bucket_value(i)


@given(st.lists(st.floats(min_value=1e-4, max_value=59.0), min_size=1, max_size=300))
def test_percentiles_in_one_pass_are_each_percentile(samples: list[float]) -> None:
    counts: dict[int, int] = {}
    for s in samples:
        counts[bucket_index(s)] = counts.get(bucket_index(s), 0) + 1
    qs = [0.0, 0.5, 0.9, 0.99, 1.0]
    assert percentiles(counts, qs) == [percentile(counts, q) for q in qs]
    with pytest.raises(ValueError, match="q must be"):
        percentiles(counts, [0.5, 2.0])

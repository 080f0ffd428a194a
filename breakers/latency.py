"""Fixed, log-spaced latency buckets: the one definition the library and the server share.

Bucket ``0`` holds durations below ``LATENCY_MIN``; the last bucket
(``BUCKET_COUNT - 1``) holds ``LATENCY_MAX`` and above; bucket ``i`` in between holds
``[LATENCY_MIN * LATENCY_RATIO**(i - 1), LATENCY_MIN * LATENCY_RATIO**i)`` (the one
before the last ends at ``LATENCY_MAX``). A histogram is a sparse mapping
``{index: count}``; histograms merge by adding counts bucket by bucket.

``bucket_value(i)`` is within 5 % of every duration of bucket ``i`` for the bounded
buckets; the two open-ended ones read as ``LATENCY_MIN`` and ``LATENCY_MAX``. Standard
library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "BUCKET_COUNT",
    "INDEX_OFFSET",
    "INDEX_SCALE",
    "LATENCY_MAX",
    "LATENCY_MIN",
    "LATENCY_RATIO",
    "bucket_bounds",
    "bucket_index",
    "bucket_value",
    "merge",
    "percentile",
]

LATENCY_MIN = 1e-4  # seconds: bucket 0 is below this
LATENCY_MAX = 60.0  # seconds: the last bucket is this and above
LATENCY_RATIO = 1.1  # each bounded bucket's upper bound over its lower bound

#: Bounded buckets between LATENCY_MIN and LATENCY_MAX (the last one is cut at MAX).
_BOUNDED = math.ceil(math.log(LATENCY_MAX / LATENCY_MIN) / math.log(LATENCY_RATIO))
#: Every bucket: below MIN, the bounded ones, MAX and above (142).
BUCKET_COUNT = _BOUNDED + 2
_LAST = BUCKET_COUNT - 1

#: For LATENCY_MIN <= s < LATENCY_MAX,
#: ``bucket_index(s) == int(math.log(s) * INDEX_SCALE + INDEX_OFFSET)``.
INDEX_SCALE = 1.0 / math.log(LATENCY_RATIO)
INDEX_OFFSET = 1.0 - math.log(LATENCY_MIN) * INDEX_SCALE
while int(math.log(LATENCY_MIN) * INDEX_SCALE + INDEX_OFFSET) < 1:  # MIN is in bucket 1
    INDEX_OFFSET = math.nextafter(INDEX_OFFSET, math.inf)
_log = math.log


def bucket_index(seconds: float) -> int:
    """The bucket of a duration in seconds (negative and NaN go to bucket 0)."""
    if seconds >= LATENCY_MIN:
        if seconds < LATENCY_MAX:
            return int(_log(seconds) * INDEX_SCALE + INDEX_OFFSET)
        return _LAST
    return 0


def _lowest(i: int) -> float:
    """The smallest float that bucket_index puts in bucket ``i`` or above (1 < i < _LAST):
    LATENCY_MIN * LATENCY_RATIO**(i - 1) to within a few units in the last place."""
    x = LATENCY_MIN * LATENCY_RATIO ** (i - 1)
    while bucket_index(x) >= i:
        x = math.nextafter(x, 0.0)
    while bucket_index(x) < i:
        x = math.nextafter(x, math.inf)
    return x


#: _LOWER[i]: the lower bound of bucket i (0.0 for bucket 0); _LOWER[_LAST] is MAX.
#: The bounds are those of bucket_index itself, so the two always agree.
_LOWER: tuple[float, ...] = (
    0.0,
    LATENCY_MIN,
    *(_lowest(i) for i in range(2, _LAST)),
    LATENCY_MAX,
)


def _check_index(i: object, name: str = "i") -> int:
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < BUCKET_COUNT:
        raise ValueError(f"{name} must be a bucket index from 0 to {_LAST}, got {i!r}")
    return i


def bucket_bounds(i: int) -> tuple[float, float]:
    """``(lower, upper)`` of bucket ``i``: lower included, upper excluded.

    Bucket 0 is ``(0.0, LATENCY_MIN)``, the last ``(LATENCY_MAX, inf)``.
    """
    _check_index(i)
    upper = math.inf if i == _LAST else _LOWER[i + 1]
    return _LOWER[i], upper


#: The representative value of each bucket (see bucket_value).
_VALUES: tuple[float, ...] = (
    LATENCY_MIN,
    *(2.0 * _LOWER[i] * _LOWER[i + 1] / (_LOWER[i] + _LOWER[i + 1]) for i in range(1, _LAST)),
    LATENCY_MAX,
)


def bucket_value(i: int) -> float:
    """The duration bucket ``i`` stands for, in seconds.

    For a bounded bucket ``[a, b)`` it is ``2ab / (a + b)``, the value whose largest
    relative error to any duration of the bucket is smallest: ``(b - a) / (b + a)``,
    4.8 % at the ratio 1.1. Bucket 0 reads as ``LATENCY_MIN`` and the last one as
    ``LATENCY_MAX`` (their durations are only known to be below / at least that).
    """
    _check_index(i)
    return _VALUES[i]


def _checked(counts: Mapping[int, int], name: str) -> list[tuple[int, int]]:
    if not isinstance(counts, Mapping):
        raise ValueError(f"{name} must be a mapping of bucket index to count, got {counts!r}")
    items = []
    for i, n in counts.items():
        _check_index(i, f"{name} index")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name}[{i}] must be a non-negative integer, got {n!r}")
        items.append((i, n))
    return items


def percentile(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 <= q <= 1) of a histogram, as its bucket's value.

    Nearest rank: the value of the bucket holding the ``max(1, ceil(q * total))``-th
    smallest duration, so the answer is within 5 % of the exact percentile of the
    durations counted (when that lies between LATENCY_MIN and LATENCY_MAX). None for
    an empty histogram; ValueError naming ``q`` or ``counts`` for bad input.
    """
    return percentiles(counts, (q,))[0]


def percentiles(counts: Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """:func:`percentile` of each of ``qs``, from one pass over the histogram."""
    for q in qs:
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be a number between 0 and 1, got {q!r}")
    items = sorted(_checked(counts, "counts"))
    total = sum(n for _, n in items)
    if total == 0:
        return [None] * len(qs)
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        seen = 0
        for i, n in items:
            seen += n
            if seen >= rank:
                out.append(_VALUES[i])
                break
    return out


def merge(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    """The sum of two sparse histograms, bucket by bucket (buckets at 0 left out)."""
    out: dict[int, int] = {}
    for i, n in (*_checked(a, "a"), *_checked(b, "b")):
        out[i] = out.get(i, 0) + n
    return {i: n for i, n in sorted(out.items()) if n}

"""Closed-path cost of shadow evaluation: a breaker alone against one with a candidate.

Run: .venv/bin/python benchmarks/bench_shadow.py [--rounds N] [--number N] [--check]

Everything runs in one process. Each round times a bare call and, on the closed path,
the same call through a breaker without a candidate and through one evaluating a
candidate config beside its own (``breaker.shadow(config, version)``), for
``call``/``call_async`` and the decorators, in an order that rotates from round to round
so background load hits every case alike. The overhead of a case is its time minus the
bare call's time of the same round; the script prints medians over the rounds and the
goal's ratio (docs/library.md, "Shadow evaluation"): the median of the per-round ratios
of the overhead with a candidate to the overhead without one, at most 1.5. Figures on a
shared machine are noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from breakers import CircuitBreaker, CircuitBreakerConfig

GOAL = 1.5


def work() -> int:
    return 1


async def awork() -> int:
    return 1


LIVE = CircuitBreakerConfig(failure_threshold=5, timeout=300)
CANDIDATE = CircuitBreakerConfig(failure_threshold=3, failure_rate_threshold=0.3, timeout=60)

alone = CircuitBreaker("alone", LIVE)
shadowed = CircuitBreaker("shadowed", LIVE)
shadowed.shadow(CANDIDATE, 2)
alone_decorated, shadowed_decorated = alone(work), shadowed(work)
alone_adecorated, shadowed_adecorated = alone(awork), shadowed(awork)

SYNC_CASES: dict[str, dict[str, str]] = {
    "bare": {"bare": "work()"},
    "call": {"alone": "alone.call(work)", "shadow": "shadowed.call(work)"},
    "decorator": {"alone": "alone_decorated()", "shadow": "shadowed_decorated()"},
}


def _async_loop(make_call: Callable[[], Any]) -> Callable[[int], Any]:
    async def loop(n: int) -> None:
        call = make_call()
        for _ in range(n):
            await call()

    return loop


ASYNC_CASES: dict[str, dict[str, Callable[[int], Any]]] = {
    "async bare": {"bare": _async_loop(lambda: lambda: awork())},
    "async call": {
        "alone": _async_loop(lambda: lambda: alone.call_async(awork)),
        "shadow": _async_loop(lambda: lambda: shadowed.call_async(awork)),
    },
    "async decorator": {
        "alone": _async_loop(lambda: alone_adecorated),
        "shadow": _async_loop(lambda: shadowed_adecorated),
    },
}


def measure(rounds: int, number: int) -> dict[tuple[str, str], list[float]]:
    """ns per call of every case, one list entry per round."""
    timers: list[tuple[tuple[str, str], Callable[[], float]]] = []
    for group, impls in SYNC_CASES.items():
        for impl, stmt in impls.items():
            timer = timeit.Timer(stmt, globals=globals())
            timers.append(((group, impl), lambda t=timer: t.timeit(number) / number * 1e9))
    loop = asyncio.new_event_loop()
    for group, async_impls in ASYNC_CASES.items():
        for impl, body in async_impls.items():

            def run(body: Callable[[int], Any] = body) -> float:
                start = timeit.default_timer()
                loop.run_until_complete(body(number))
                return (timeit.default_timer() - start) / number * 1e9

            timers.append(((group, impl), run))
    results: dict[tuple[str, str], list[float]] = {key: [] for key, _ in timers}
    for _, fn in timers:  # warm up
        fn()
    for r in range(rounds):
        shift = r % len(timers)
        for key, fn in timers[shift:] + timers[:shift]:
            results[key].append(fn())
    loop.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 1000 or not 100 <= args.number <= 10_000_000:
        parser.error("--rounds must be 1..1000 and --number 100..10000000")

    results = measure(args.rounds, args.number)
    report = shadowed.shadow_report()
    assert report is not None and report["state"] == "closed", "the candidate left closed"
    assert shadowed.traffic()["calls"] == alone.traffic()["calls"]

    print(
        f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.number} calls, "
        "interleaved; ns per call, medians over the rounds"
    )
    print(f"{'case':<18}{'breaker':<10}{'median':>9}{'overhead':>10}{'ratio':>8}")
    missed = []
    for group in ("call", "decorator", "async call", "async decorator"):
        bare = results[("async bare" if group.startswith("async") else "bare", "bare")]
        per_round = {
            impl: [t - b for t, b in zip(results[(group, impl)], bare, strict=True)]
            for impl in ("alone", "shadow")
        }
        ratios = [s / a for s, a in zip(per_round["shadow"], per_round["alone"], strict=True)]
        ratio = statistics.median(ratios)
        for impl in ("alone", "shadow"):
            print(
                f"{group:<18}{impl:<10}{statistics.median(results[(group, impl)]):>9.0f}"
                f"{statistics.median(per_round[impl]):>10.0f}"
                + (f"{ratio:>8.2f}" if impl == "shadow" else "")
            )
        if ratio > GOAL:
            missed.append(f"{group}: {ratio:.2f}x > {GOAL}x")
    print(f"goal: the overhead with a candidate at most {GOAL}x the overhead without")
    for line in missed:
        print("MISSED", line)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())

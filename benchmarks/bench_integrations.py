"""Per-request overhead of the HTTP integrations against the bare clients, same run.

Run: .venv/bin/python benchmarks/bench_integrations.py [--rounds N] [--requests N]

A keep-alive HTTP/1.1 server answers "ok" from another process on 127.0.0.1 (so the
client's process holds only the client). Each round sends ``--requests`` GETs through
each client in turn, in an order that rotates from round to round: httpx.Client bare
and with BreakerTransport, requests.Session bare and with BreakerAdapter, and
httpx.AsyncClient bare and with AsyncBreakerTransport, and aiohttp.ClientSession bare
and with BreakerMiddleware. The script prints the median
over rounds of the time per request, the integration's overhead (guarded minus bare,
per round, median) and that overhead as a share of the bare round trip (goal: at most
5% for httpx and requests). Figures on a shared machine are noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import httpx
import requests

from breakers import CircuitBreakerRegistry
from breakers.integrations.aiohttp import BreakerMiddleware
from breakers.integrations.httpx import AsyncBreakerTransport, BreakerTransport
from breakers.integrations.requests import BreakerAdapter


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once (no delayed-ACK stall)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def serve(port_out: multiprocessing.SimpleQueue) -> None:  # type: ignore[type-arg]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def timed(send: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        send()
    return (time.perf_counter() - started) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300, help="per client per round")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 1000 or not 10 <= args.requests <= 100_000:
        parser.error("--rounds must be 1..1000 and --requests 10..100000")

    ports: multiprocessing.SimpleQueue = multiprocessing.SimpleQueue()  # type: ignore[type-arg]
    server = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get()}/"
    registry = CircuitBreakerRegistry()

    httpx_bare = httpx.Client()
    httpx_guarded = httpx.Client(transport=BreakerTransport(registry=registry))
    requests_bare = requests.Session()
    requests_guarded = requests.Session()
    requests_guarded.mount("http://", BreakerAdapter(registry=registry))
    loop = asyncio.new_event_loop()
    async_bare = httpx.AsyncClient()
    async_guarded = httpx.AsyncClient(transport=AsyncBreakerTransport(registry=registry))

    async def sessions() -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        return aiohttp.ClientSession(), aiohttp.ClientSession(
            middlewares=(BreakerMiddleware(registry=registry),)
        )

    aio_bare, aio_guarded = loop.run_until_complete(sessions())

    def aiohttp_sender(session: aiohttp.ClientSession) -> Callable[[int], float]:
        async def run(n: int) -> float:
            started = time.perf_counter()
            for _ in range(n):
                async with session.get(url) as response:
                    await response.read()
            return (time.perf_counter() - started) / n

        return lambda n: loop.run_until_complete(run(n))

    def async_sender(client: httpx.AsyncClient) -> Callable[[int], float]:
        async def run(n: int) -> float:
            started = time.perf_counter()
            for _ in range(n):
                await client.get(url)
            return (time.perf_counter() - started) / n

        return lambda n: loop.run_until_complete(run(n))

    cases: dict[tuple[str, str], Callable[[int], float]] = {
        ("httpx", "bare"): lambda n: timed(lambda: httpx_bare.get(url), n),
        ("httpx", "guarded"): lambda n: timed(lambda: httpx_guarded.get(url), n),
        ("requests", "bare"): lambda n: timed(lambda: requests_bare.get(url), n),
        ("requests", "guarded"): lambda n: timed(lambda: requests_guarded.get(url), n),
        ("httpx async", "bare"): async_sender(async_bare),
        ("httpx async", "guarded"): async_sender(async_guarded),
        ("aiohttp", "bare"): aiohttp_sender(aio_bare),
        ("aiohttp", "guarded"): aiohttp_sender(aio_guarded),
    }
    keys = list(cases)
    for key in keys:  # warm up: connections open, breakers created
        cases[key](20)
    results: dict[tuple[str, str], list[float]] = {key: [] for key in keys}
    for r in range(args.rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            results[key].append(cases[key](args.requests))
    server.terminate()

    print(
        f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.requests} requests"
        " per client, interleaved; us per request (median over rounds)"
    )
    print(f"{'client':<14}{'bare':>10}{'guarded':>10}{'overhead':>10}{'share':>9}  goal")
    failed = False
    for client in ("httpx", "requests", "httpx async", "aiohttp"):
        bare, guarded = results[(client, "bare")], results[(client, "guarded")]
        overhead = statistics.median(g - b for g, b in zip(guarded, bare, strict=True))
        share = statistics.median(g / b - 1 for g, b in zip(guarded, bare, strict=True))
        goal = "<= 5%" if client in ("httpx", "requests") else "-"
        ok = share <= 0.05 or goal == "-"
        failed |= not ok
        print(
            f"{client:<14}{statistics.median(bare) * 1e6:>10.1f}"
            f"{statistics.median(guarded) * 1e6:>10.1f}{overhead * 1e6:>10.1f}"
            f"{share * 100:>8.1f}%  {goal}{'' if ok else '  MISSED'}"
        )
    for b in registry:
        t = b.traffic()
        print(f"  breaker {b.name}: {t['calls']} calls, {t['failures']} failures")
    otel_cost(args.rounds)
    loop.run_until_complete(aio_bare.close())
    loop.run_until_complete(aio_guarded.close())
    loop.close()
    return 1 if failed else 0


def otel_cost(rounds: int, number: int = 20_000) -> None:
    """ns per closed-path call of a bare breaker, and of one in a registry instrumented
    by breakers.integrations.opentelemetry (SDK meter, latency histogram on and off)."""
    import timeit

    from opentelemetry.sdk.metrics import MeterProvider

    from breakers.integrations.opentelemetry import instrument

    def work() -> int:
        return 1

    breakers = {}
    for label, latency in (
        ("bare", None),
        ("otel, latency off", False),
        ("otel, latency on", True),
    ):
        reg = CircuitBreakerRegistry()
        if latency is not None:
            instrument(reg, meter_provider=MeterProvider(), latency=latency)
        breakers[label] = reg.get_or_create("b")
    results: dict[str, list[float]] = {label: [] for label in breakers}
    for _ in range(rounds):
        for label, breaker in breakers.items():
            seconds = timeit.timeit(lambda b=breaker: b.call(work), number=number)
            results[label].append(seconds / number * 1e9)
    print("\nbreaker.call(work), ns per call (median over rounds): OpenTelemetry's cost")
    bare = statistics.median(results["bare"])
    for label, values in results.items():
        median = statistics.median(values)
        print(f"  {label:<20}{median:>8.0f}  (+{median - bare:.0f})")


if __name__ == "__main__":
    raise SystemExit(main())

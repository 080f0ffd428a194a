"""Propagation of an operator's force to a fleet of agents, and the agent's call overhead.

Run: .venv/bin/python benchmarks/bench_propagation.py [--agents 200] [--rounds 5] [--hosts 4]
         [--app project|plain-django] [--poll-interval 5] [--workers 1]

What it does, all on this machine:

1. Prepares a database (BENCH_DATABASE_URL, default .../switchyard_bench, migrated here)
   and starts one control plane: ``python -m controlplane.serve`` (uvicorn workers)
   serving controlplane.asgi on 127.0.0.1 with the
   Redis change feed (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14).
2. Starts ``--agents`` real :class:`breakers.agent.Agent` objects, each with its own
   registry and breaker "payments", spread over ``--hosts`` processes separate from the
   server. Every agent syncs once and then holds the long-poll watch.
3. Each round forces "payments" open through the operator API (HTTP POST), records the
   moment each agent's local breaker became forced_open (CLOCK_MONOTONIC is shared by
   all processes), then releases it the same way and records the return to closed.
4. Prints p50 / p99 / max per round and over all rounds, for force and for release.
5. Each of ``--rollout-rounds`` starts a canary rollout of "payments" on
   ``--canary-percent`` % of the agents through the operator API, records when each
   selected agent's breaker ran the canary version (and checks that no other agent did),
   then rolls it back and records when each canary agent ran the current version again.
   The goal for rollback is the same: every canary within 1 s at 1,000 agents.
6. Measures the protected call (``breaker.call``) with an agent running against the same
   control plane and without one, interleaved, best of N rounds.

With ``--probes N``, one more process holds N watches with asyncio and nothing else (no
agent, no thread per watch) and records when each watch's answer with the change has
arrived: the server's delivery, apart from the agents' processes, where hundreds of
agent threads share one GIL. Each round then prints both.

The goal is p99 under 1 s at 1,000 agents. The machine is shared; medians over
rounds are the figures to compare.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import timeit
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/switchyard_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
# A new service per run: earlier runs' rows stay, history is append-only.
SERVICE = f"bench-{int(time.time())}"
CIRCUIT = "payments"


# -- agent host processes --------------------------------------------------------------


def first_arrivals(
    log: list[tuple[int, str, float]],
    read: int,
    kind: str,
    since: float,
    count: int,
    timeout: float,
) -> tuple[list[float], int]:
    """Each index's first entry of ``kind`` at or after ``since`` in ``log`` (index,
    kind, monotonic time), polled until all ``count`` arrived or ``timeout`` passed.

    Reads only the entries after ``read`` and returns the new read position with the
    times: the bookkeeping must not compete with the agents for the GIL while they apply
    the change, whatever the number of rounds."""
    end = time.monotonic() + timeout
    first: dict[int, float] = {}
    while True:
        new = log[read:]
        read += len(new)
        for i, what, t in new:
            if what == kind and t >= since and i not in first:
                first[i] = t
        if len(first) == count or time.monotonic() >= end:
            return list(first.values()), read
        time.sleep(0.01)


def host_main(conn: Any, url: str, token: str, service: str, count: int, host_index: int) -> None:
    """Run ``count`` agents; record when each one's breaker changes state."""
    from breakers import CircuitBreakerRegistry
    from breakers.agent import Agent
    from breakers.canary import selected

    events: list[tuple[int, str, float]] = []  # (agent index, to_state, monotonic time)
    collected = 0  # of events, how many a collect has read

    def listener_for(index: int) -> Any:
        def on_transition(event: Any) -> None:
            events.append((index, str(event.to_state.value), time.monotonic()))

        return on_transition

    agents = []
    breakers: list[Any] = []
    # Canary rounds: (config version, agent indexes to watch) and the first moment each
    # of them ran that version.
    armed: dict[str, Any] = {}
    reached: dict[int, float] = {}

    def poll_versions() -> None:
        # Looks only at the agents that have not run the version yet, every 2 ms: the
        # bookkeeping must not compete with the agents for the GIL while they apply it.
        pending: list[int] = []
        polled = None
        while True:
            target = armed.get("target")
            if target is None:
                time.sleep(0.01)
                continue
            if target is not polled:
                polled, pending = target, list(target[1])
            version = target[0]
            now = time.monotonic()
            still = []
            for i in pending:
                if breakers[i].config_version == version:
                    reached[i] = now
                else:
                    still.append(i)
            pending = still
            time.sleep(0.002 if pending else 0.01)

    for index in range(count):
        registry = CircuitBreakerRegistry()
        breakers.append(registry.get_or_create(CIRCUIT))
        registry.add_transition_listener(listener_for(index))
        agent = Agent(
            url,
            token,
            service,
            registry=registry,
            interval=60.0,
            request_timeout=30.0,
            backoff_initial=0.5,
            backoff_max=5.0,
            instance_id=f"bench-{host_index}-{index}",
        )
        agents.append(agent)
    # Bring the fleet up one agent at a time per host: this measures propagation, not
    # how the sync endpoint copes with a thousand first syncs in the same second.
    for agent in agents:
        agent.start()
        deadline = time.monotonic() + 30
        while not agent.stats()["syncs_ok"] and time.monotonic() < deadline:
            time.sleep(0.005)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(a.stats()["syncs_ok"] for a in agents):
        time.sleep(0.1)
    conn.send(("ready", sum(1 for a in agents if a.stats()["syncs_ok"])))
    threading.Thread(target=poll_versions, daemon=True).start()
    while True:
        command, arg = conn.recv()
        if command == "arm":
            version, select = arg
            picked = [i for i, a in enumerate(agents) if selected(select, a.identity)]
            reached.clear()
            armed["target"] = (version, picked)
            conn.send(len(picked))
        elif command == "collect_versions":
            timeout = arg
            version, picked = armed["target"]
            end = time.monotonic() + timeout
            while time.monotonic() < end and len(reached) < len(picked):
                time.sleep(0.01)
            armed["target"] = None
            others = [
                i for i in range(count) if i not in picked and breakers[i].config_version == version
            ]
            conn.send((list(reached.values()), len(others)))
        elif command == "collect":
            since, state, timeout = arg
            times, collected = first_arrivals(events, collected, state, since, count, timeout)
            conn.send(times)
        elif command == "stats":
            conn.send([a.stats() for a in agents])
        elif command == "stop":
            conn.send("stopped")  # the process exits; its daemon threads go with it
            return


# -- watch probes ----------------------------------------------------------------------


def probe_main(conn: Any, port: int, token: str, count: int, since: int) -> None:
    """Hold ``count`` watches from version ``since`` on one event loop; record when each
    answer with a change arrived. The loop runs in a thread; this one answers the
    parent's commands."""
    import asyncio

    answers: list[tuple[int, str, float]] = []  # (probe index, "answer", monotonic time)
    sent = [0]  # probes whose first watch is on its way
    ready = threading.Event()

    async def watch(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"Authorization: Bearer {token}\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: application/json\r\n\r\n"
        ).encode()
        version = since
        first = True
        while True:
            path = f"/api/v1/agent/watch?since={version}&instance=probe-{index}"
            writer.write(f"GET {path} HTTP/1.1\r\n".encode() + head)
            await writer.drain()
            if first:
                first = False
                sent[0] += 1
                if sent[0] == count:
                    ready.set()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            if status == 200:
                answers.append((index, "answer", time.monotonic()))
                version = json.loads(body)["desired_version"]
            elif status != 204:
                raise SystemExit(f"probe {index}: watch answered {status}: {body[:200]!r}")

    async def run() -> None:
        tasks = []
        for index in range(count):
            tasks.append(asyncio.create_task(watch(index)))
            await asyncio.sleep(0.001)  # a fleet that comes up over a second, not at once
        await asyncio.gather(*tasks)

    threading.Thread(target=asyncio.run, args=(run(),), daemon=True).start()
    ready.wait(60)
    conn.send(("ready", sent[0]))
    read = 0
    while True:
        command, arg = conn.recv()
        if command == "collect":
            start, timeout = arg
            times, read = first_arrivals(answers, read, "answer", start, count, timeout)
            conn.send(times)
        elif command == "stop":
            conn.send("stopped")
            return


# -- control plane ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database(db_url: str) -> None:
    import psycopg

    name = db_url.rsplit("/", 1)[1]
    admin = db_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(db_url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def create_fixtures() -> tuple[str, str]:
    """A fresh service with an agent token, and an operator with an API token."""
    from django.contrib.auth.models import Group, User

    from controlplane.circuits.auth import create_agent_token, create_api_token
    from controlplane.circuits.models import Service

    service = Service.objects.create(name=SERVICE)
    _, agent_token = create_agent_token(service, label="bench")
    user, _ = User.objects.get_or_create(username="bench-operator")
    user.groups.add(Group.objects.get(name="operator"))
    _, api_token = create_api_token(user, label="bench")
    return agent_token, api_token


APPS = {
    # What `make run` and production serve.
    "project": ["controlplane.asgi:application"],
    # Django's own ASGI handler alone: the watch goes through the middleware stack.
    "plain-django": ["--factory", "django.core.asgi:get_asgi_application"],
}


def start_server(
    port: int, db_url: str, redis_url: str, app: str, poll_interval: int, workers: int = 1
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        DEBUG="0",
        SECRET_KEY="bench-only-not-a-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        # The fleet learns of changes through the watch, while it keeps syncing at the
        # default interval: propagation is measured under the real ingest load.
        SWITCHYARD_POLL_INTERVAL=str(poll_interval),
        PYTHONPATH=str(ROOT),
    )
    # The project as production serves it (python -m controlplane.serve: a SO_REUSEPORT
    # socket per worker); Django's plain handler through uvicorn's own --workers.
    launcher = ["controlplane.serve"] if app == "project" else ["uvicorn", *APPS[app]]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            *launcher,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "4096",
            "--timeout-graceful-shutdown",
            "1",
            # Agents keep their connection between syncs: longer than their interval.
            "--timeout-keep-alive",
            "30",
            *(["--workers", str(workers)] if workers > 1 else []),
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("control plane did not start")


def api(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


# -- figures ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def describe(values: list[float], expected: int) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"n={len(ms)}/{expected}  first={min(ms, default=float('nan')):7.1f} ms  "
        f"p50={percentile(ms, 0.5):7.1f} ms  "
        f"p99={percentile(ms, 0.99):7.1f} ms  max={max(ms, default=float('nan')):7.1f} ms"
    )


def measure_overhead(port: int, token: str, rounds: int, number: int) -> None:
    from breakers import CircuitBreakerRegistry
    from breakers.agent import Agent

    registry = CircuitBreakerRegistry()
    breaker = registry.get_or_create("overhead")

    def work() -> int:
        return 1

    def run() -> float:
        return timeit.timeit(lambda: breaker.call(work), number=number) / number * 1e9

    results: dict[str, list[float]] = {"without agent": [], "with agent": []}
    for r in range(rounds):
        order = ["without agent", "with agent"] if r % 2 == 0 else ["with agent", "without agent"]
        for mode in order:
            if mode == "with agent":
                agent = Agent(
                    f"http://127.0.0.1:{port}",
                    token,
                    SERVICE,
                    registry=registry,
                    interval=1.0,
                    min_interval=1.0,
                )
                agent.start()
                deadline = time.monotonic() + 10
                while not agent.stats()["syncs_ok"] and time.monotonic() < deadline:
                    time.sleep(0.01)
                results[mode].append(run())
                agent.stop(timeout=2.0)
            else:
                results[mode].append(run())
    best = {k: min(v) for k, v in results.items()}
    median = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"\nprotected call (breaker.call of a trivial function), {rounds} rounds x "
        f"{number:,} calls, interleaved; ns per call"
    )
    for mode in results:
        print(f"  {mode:<14} best {best[mode]:7.0f}   median {median[mode]:7.0f}")
    print(
        f"  with/without   best {best['with agent'] / best['without agent']:.3f}   "
        f"median {median['with agent'] / median['without agent']:.3f}"
    )


def canary_rounds(
    port: int, token: str, circuit_id: int, pipes: list[tuple[Any, int]], args: Any
) -> None:
    """Start a canary and roll it back, ``--rollout-rounds`` times: when each selected
    agent runs the canary version, then the current one again."""
    base = f"/api/v1/circuits/{circuit_id}/rollouts/"
    status, circuit = api(port, "GET", f"/api/v1/circuits/{circuit_id}/", token)
    assert status == 200, circuit
    current = circuit["config_version"]
    started_all: list[float] = []
    rolled_all: list[float] = []
    expected_all = 0
    wrong = 0
    canary_version: int | None = None
    for r in range(args.rollout_rounds):
        # A new version the first time, then the same one (rolled back, never current).
        body: dict[str, Any] = {"percent": args.canary_percent, "reason": "bench"}
        if canary_version is None:
            body["config"] = {"timeout": 31.0}
        else:
            body["to_version"] = canary_version
        # The selector's salt is chosen by the server: arm the hosts after the answer,
        # measuring from before the request (an agent that applied before its host was
        # armed is recorded when the host first looks: a late figure, never an early one).
        t0 = time.monotonic()
        status, rollout = api(port, "POST", base, token, body)
        assert status == 201, rollout
        canary_version = rollout["to_version"]
        for step, version, sink in (
            ("start", canary_version, started_all),
            ("rollback", current, rolled_all),
        ):
            if step == "rollback":
                for parent, _ in pipes:
                    parent.send(("arm", (version, rollout["select"])))
                    parent.recv()
                t0 = time.monotonic()
                status, ended = api(port, "POST", f"{base}{rollout['id']}/rollback/", token, {})
                assert status == 200, ended
            else:
                expected = 0
                for parent, _ in pipes:
                    parent.send(("arm", (version, rollout["select"])))
                    expected += parent.recv()
                expected_all += expected
            latencies: list[float] = []
            for parent, _ in pipes:
                parent.send(("collect_versions", 10.0))
                times, others = parent.recv()
                latencies.extend(t - t0 for t in times)
                if step == "start":
                    wrong += others
            sink.extend(latencies)
            print(f"round {r + 1} canary {step:<8} {describe(latencies, expected)}")
            time.sleep(args.settle)
    print(f"\nall rounds, canary start    {describe(started_all, expected_all)}")
    print(f"all rounds, canary rollback {describe(rolled_all, expected_all)}")
    print(f"agents outside the canary that ran its version: {wrong}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200, help="simulated agents (1-5000)")
    parser.add_argument("--hosts", type=int, default=4, help="agent processes (1-64)")
    parser.add_argument("--rounds", type=int, default=5, help="force/release rounds (1-100)")
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds between steps, for the fleet's report syncs to pass",
    )
    parser.add_argument(
        "--app",
        choices=sorted(APPS),
        default="project",
        help="project: controlplane.asgi as deployed (watch fast path); "
        "plain-django: Django's ASGI handler alone, for comparison",
    )
    parser.add_argument(
        "--poll-interval",
        type=int,
        default=5,
        help="the server's sync interval for agents (s, 1-3600)",
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes (1-16)")
    parser.add_argument(
        "--rollout-rounds", type=int, default=3, help="canary start/rollback rounds (0-100)"
    )
    parser.add_argument(
        "--canary-percent", type=int, default=50, help="share of agents in the canary (1-99)"
    )
    parser.add_argument(
        "--probes",
        type=int,
        default=0,
        help="watches held by one asyncio process besides the agents, to time the "
        "server's delivery apart from them (0-5000)",
    )
    parser.add_argument("--overhead-rounds", type=int, default=7)
    parser.add_argument("--overhead-number", type=int, default=200_000)
    args = parser.parse_args()
    for name, value, low, high in (
        ("--agents", args.agents, 1, 5000),
        ("--hosts", args.hosts, 1, 64),
        ("--rounds", args.rounds, 1, 100),
        ("--poll-interval", args.poll_interval, 1, 3600),
        ("--workers", args.workers, 1, 16),
        ("--rollout-rounds", args.rollout_rounds, 0, 100),
        ("--canary-percent", args.canary_percent, 1, 99),
        ("--probes", args.probes, 0, 5000),
    ):
        if not low <= value <= high:
            parser.error(f"{name} must be between {low} and {high}, got {value}")
    hosts = min(args.hosts, args.agents)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 65536)), hard))
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    prepare_database(db_url)
    setup_django(db_url, redis_url)
    agent_token, api_token = create_fixtures()
    from django.db import connections

    connections.close_all()

    port = free_port()
    server = start_server(port, db_url, redis_url, args.app, args.poll_interval, args.workers)
    url = f"http://127.0.0.1:{port}"
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    try:
        started = time.monotonic()
        for h in range(hosts):
            count = args.agents // hosts + (1 if h < args.agents % hosts else 0)
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=host_main, args=(child, url, agent_token, SERVICE, count, h), daemon=True
            )
            proc.start()
            pipes.append((parent, count))
            procs.append(proc)
        ready = sum(parent.recv()[1] for parent, _ in pipes)
        print(
            f"{ready}/{args.agents} agents synced in {time.monotonic() - started:.1f} s "
            f"({hosts} agent processes, {args.workers} server worker(s) serving {args.app!r}, "
            f"Redis change feed, sync interval {args.poll_interval} s)"
        )
        probe: Any = None
        if args.probes:
            from controlplane.circuits.models import Service

            since = Service.objects.get(name=SERVICE).desired_version
            connections.close_all()
            probe, child = ctx.Pipe()
            proc = ctx.Process(
                target=probe_main,
                args=(child, port, agent_token, args.probes, since),
                daemon=True,
            )
            proc.start()
            procs.append(proc)
            print(f"{probe.recv()[1]}/{args.probes} watch probes holding (one asyncio process)")
        time.sleep(args.settle)  # every agent back in its watch
        status, body = api(
            port, "GET", f"/api/v1/circuits/?service={SERVICE}&q={CIRCUIT}", api_token
        )
        circuit = next(
            c for c in body["results"] if c["name"] == CIRCUIT and c["service"] == SERVICE
        )
        path = f"/api/v1/circuits/{circuit['id']}/override/"

        forced_all: list[float] = []
        released_all: list[float] = []
        delivered_all: list[float] = []
        api_times: list[float] = []
        for r in range(args.rounds):
            for action, state, sink in (
                ("force", "forced_open", forced_all),
                ("release", "closed", released_all),
            ):
                t0 = time.monotonic()
                if action == "force":
                    status, body = api(
                        port, "POST", path, api_token, {"state": "forced_open", "reason": "bench"}
                    )
                    assert status == 201, body
                else:
                    status, body = api(port, "DELETE", path, api_token, {"reason": "bench"})
                    assert status == 204, body
                api_times.append(time.monotonic() - t0)
                for parent, _ in pipes:
                    parent.send(("collect", (t0, state, 10.0)))
                if probe is not None:
                    probe.send(("collect", (t0, 10.0)))
                per_host = [[t - t0 for t in parent.recv()] for parent, _ in pipes]
                latencies = [t for host in per_host for t in host]
                sink.extend(latencies)
                medians = " / ".join(
                    f"{percentile([t * 1000 for t in host], 0.5):.0f}" for host in per_host
                )
                print(
                    f"round {r + 1} {action:<7} {describe(latencies, args.agents)}  "
                    f"API call {api_times[-1] * 1000:6.1f} ms  p50 per agent process {medians} ms"
                )
                if probe is not None:
                    delivered = [t - t0 for t in probe.recv()]
                    delivered_all.extend(delivered)
                    print(f"        watch probes {describe(delivered, args.probes)}")
                time.sleep(args.settle)
        print(f"\nall rounds, force   {describe(forced_all, args.agents * args.rounds)}")
        print(f"all rounds, release {describe(released_all, args.agents * args.rounds)}")
        if probe is not None:
            print(
                f"all rounds, watch probes {describe(delivered_all, args.probes * args.rounds * 2)}"
            )
        if args.rollout_rounds:
            canary_rounds(port, api_token, circuit["id"], pipes, args)
        print(
            f"operator API call (POST/DELETE override): median "
            f"{statistics.median(api_times) * 1000:.1f} ms"
        )
        for parent, _ in pipes:
            parent.send(("stats", None))
        stats = [s for parent, _ in pipes for s in parent.recv()]
        failed = sum(s["syncs_failed"] + s["watch_failed"] for s in stats)
        changes = sum(s["watch_changes"] for s in stats)
        print(
            f"agent errors during the run (sync + watch): {failed}; "
            f"watch answers with a change: {changes}"
        )
        for parent in [p for p, _ in pipes] + ([probe] if probe is not None else []):
            parent.send(("stop", None))
            parent.recv()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(5)

    try:
        measure_overhead(port, agent_token, args.overhead_rounds, args.overhead_number)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

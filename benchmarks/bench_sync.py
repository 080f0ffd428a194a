"""Sync ingest benchmark: a fleet of instances x breakers against real PostgreSQL.

Creates a scratch database, migrates it, registers every instance once, then runs
interleaved rounds of steady-state syncs through three paths:

* store    - the sync's parse + ``Store.write`` (the set-based storage path alone, one
             sync per transaction)
* http     - the full endpoint through Django's test client (JSON, token, view)
* naive    - a per-row ORM peer (update_or_create per snapshot, get_or_create per
             transition) doing the same writes, to show what set-based writes buy

Prints the median and p95 latency per sync, syncs/s, and queries per sync.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/bench_sync.py --instances 200 --breakers 20 --rounds 3

DATABASE_URL names the server; the benchmark creates and drops its own database there.
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _scratch_database(server_url: str) -> tuple[str, str]:
    """Create a scratch database on the server; returns (its URL, its name)."""
    parts = urlsplit(server_url)
    name = f"switchyard_bench_{uuid.uuid4().hex[:8]}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def _drop_database(server_url: str, name: str) -> None:
    admin_url = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _body(instance: int, breakers: int, round_no: int, first_tid: int) -> dict[str, Any]:
    """One instance's sync: every breaker's counters, and one transition per 4 breakers."""
    transitions = [
        {
            "id": first_tid + k,
            "breaker": f"dep_{k * 4}",
            "from": "closed",
            "to": "open",
            "at": f"2026-11-27T10:{round_no % 60:02d}:00Z",
            "reason": "failure_rate",
            "failure_rate": 0.6,
            "calls": 10,
            "failures": 6,
        }
        for k in range(max(1, breakers // 4))
    ]
    return {
        "protocol": 1,
        "clock": 5.0 * round_no + 1.0,  # the agent's clock: one sync interval per round
        "instance": {
            "id": f"inst-{instance}",
            "hostname": f"host-{instance}",
            "pid": 1000 + instance,
            "started_at": "2026-11-27T09:00:00Z",
            "library_version": "0.1.0",
        },
        "breakers": [
            {
                "name": f"dep_{b}",
                "state": "open" if (b + round_no) % 7 == 0 else "closed",
                "config_version": 1,
                "calls": 100 * round_no + b,
                "successes": 90 * round_no,
                "failures": 10 * round_no,
                "slow_calls": 0,
                "rejected": round_no,
                "failure_rate": 0.1,
                "trip_count": round_no,
                "state_since": "2026-11-27T09:30:00Z",
                "retry_after": None,
            }
            for b in range(breakers)
        ],
        "transitions": transitions,
        "dropped_transitions": 0,
    }


def _naive_ingest(service: Any, payload: dict[str, Any]) -> int:
    """The per-row peer: same rows written, one query (or more) per breaker and transition."""
    from django.db import transaction
    from django.utils import timezone

    from controlplane.circuits.models import Circuit, Instance, Snapshot, Transition

    now = timezone.now()
    with transaction.atomic():
        info = payload["instance"]
        instance, _ = Instance.objects.select_for_update().get_or_create(
            service=service,
            instance_id=info["id"],
            defaults={"first_seen": now, "last_seen": now},
        )
        for b in payload["breakers"]:
            circuit = Circuit.objects.get(service=service, name=b["name"])
            Snapshot.objects.update_or_create(
                instance=instance,
                circuit=circuit,
                defaults={
                    "state": b["state"],
                    "config_version": b["config_version"],
                    "calls": b["calls"],
                    "failures": b["failures"],
                    "updated_at": now,
                },
            )
        top = instance.acked_through
        for t in payload["transitions"]:
            circuit = Circuit.objects.get(service=service, name=t["breaker"])
            Transition.objects.get_or_create(
                instance=instance,
                generation=instance.generation,
                seq=t["id"],
                defaults={
                    "circuit": circuit,
                    "from_state": t["from"],
                    "to_state": t["to"],
                    "at": t["at"],
                    "reason": t["reason"],
                    "received_at": now,
                },
            )
            top = max(top, t["id"])
        instance.acked_through = top
        instance.last_seen = now
        instance.save(update_fields=["acked_through", "last_seen"])
    return top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--breakers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="steady-state rounds per path")
    args = parser.parse_args()
    if not 1 <= args.breakers <= 500:
        parser.error("--breakers must be between 1 and 500")
    if not 1 <= args.instances <= 100_000 or not 1 <= args.rounds <= 1000:
        parser.error("--instances must be 1-100000 and --rounds 1-1000")

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not server.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at a PostgreSQL server")
    url, name = _scratch_database(server)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    try:
        _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        _drop_database(server, name)


def _run(args: argparse.Namespace) -> None:
    import django

    django.setup()
    import orjson
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test import Client
    from django.utils import timezone

    from controlplane.circuits.auth import create_agent_token
    from controlplane.circuits.models import Service
    from controlplane.circuits.sync.parse import parse
    from controlplane.circuits.sync.store import Item, get_store

    call_command("migrate", verbosity=0)
    service = Service.objects.create(name="bench")

    def store_one(payload: dict[str, Any]) -> None:
        item = Item(service.pk, service.name, parse(orjson.dumps(payload)), timezone.now())
        get_store().write([item])
        assert item.error is None, item.error

    _, token = create_agent_token(service)
    client = Client()
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(
        f"bench_sync: {args.instances} instances x {args.breakers} breakers, "
        f"{max(1, args.breakers // 4)} transitions per sync, {args.rounds} rounds per path; "
        f"PostgreSQL {connection.pg_version // 10000}, channel layer {layer}"
    )

    # Registration: every instance's first sync (circuits are created by the first one).
    t0 = time.perf_counter()
    for i in range(args.instances):
        store_one(_body(i, args.breakers, 0, 1))
    print(f"registration: {args.instances} first syncs in {time.perf_counter() - t0:.2f} s")

    next_tid = [1 + max(1, args.breakers // 4)] * args.instances
    timings: dict[str, list[float]] = {"store": [], "http": [], "naive": []}
    queries: dict[str, list[int]] = {"store": [], "http": [], "naive": []}

    def one(path: str, i: int, round_no: int) -> None:
        payload = _body(i, args.breakers, round_no, next_tid[i])
        next_tid[i] += len(payload["transitions"])
        reset_queries()
        start = time.perf_counter()
        if path == "store":
            store_one(payload)
        elif path == "http":
            response = client.post(
                "/api/v1/agent/sync",
                data=json.dumps(payload),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
            assert response.status_code == 200, response.content[:300]
        else:
            _naive_ingest(service, payload)
        timings[path].append(time.perf_counter() - start)
        queries[path].append(len(connection.queries))

    settings.DEBUG = True  # count queries
    round_no = 1
    for _ in range(args.rounds):
        # Interleave the paths so that machine noise hits all of them alike.
        for path in ("store", "http", "naive"):
            for i in range(args.instances):
                one(path, i, round_no)
            round_no += 1

    print(f"{'path':8} {'syncs':>6} {'median ms':>10} {'p95 ms':>8} {'syncs/s':>8} {'queries':>8}")
    medians = {}
    for path, values in timings.items():
        ordered = sorted(values)
        median = statistics.median(ordered)
        medians[path] = median
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        print(
            f"{path:8} {len(values):6d} {median * 1000:10.2f} {p95 * 1000:8.2f} "
            f"{1 / median:8.0f} {statistics.median(queries[path]):8.0f}"
        )
    print(
        f"naive/store median ratio: {medians['naive'] / medians['store']:.1f}x; "
        f"breaker snapshots stored per second (store): {args.breakers / medians['store']:.0f}"
    )


if __name__ == "__main__":
    main()

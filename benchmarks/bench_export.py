"""Streaming a history export through a real server: rows per second and memory.

Run: .venv/bin/python benchmarks/bench_export.py [--rows 1000000] [--runs 3]

What it does, all on this machine:

1. Prepares a database (BENCH_DATABASE_URL, default .../switchyard_bench_export, dropped
   and migrated), registers 20 circuits seen by 10 instances and loads ``--rows``
   transitions with COPY, spread over 30 days, then ANALYZE.
2. Starts uvicorn (controlplane.asgi, DEBUG=0, no Redis) on 127.0.0.1 and asks
   ``GET /api/v1/transitions/export/?format=csv|jsonl`` for the whole window with httpx
   as a viewer (personal API token), ``--runs`` times per format, reading the body as it
   arrives. A thread reads the server's VmRSS (/proc/<pid>/status) every 20 ms.
3. Prints per format the median rows/s (rows counted in the body), the time to the
   first bytes, the body size and the server's peak RSS growth over its RSS before the
   run, against the goal (100,000 rows/s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboard import prepare_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/switchyard_bench_export"
GOAL_ROWS_PER_SECOND = 100_000
END = datetime(2026, 11, 27, tzinfo=UTC)
DAYS = 30
STATES = ["closed", "open", "half_open"]


def setup_django(db_url: str) -> None:
    os.environ.update(
        DATABASE_URL=db_url,
        DEBUG="0",
        SECRET_KEY="bench-export-not-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # Loading a million rows is one COPY statement.
        DATABASE_STATEMENT_TIMEOUT_MS="600000",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(rows: int) -> str:
    """Load ``rows`` transitions with COPY; returns a viewer's API token."""
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from controlplane.circuits.auth import create_api_token
    from controlplane.circuits.models import Circuit, Instance, Service

    service = Service.objects.create(name="checkout")
    circuits = [Circuit.objects.create(service=service, name=f"c-{i:02d}").pk for i in range(20)]
    instances = [
        Instance.objects.create(
            service=service, instance_id=f"web-{i}", first_seen=END, last_seen=END
        ).pk
        for i in range(10)
    ]
    step = timedelta(days=DAYS) / rows
    columns = (
        "instance_id, circuit_id, generation, seq, from_state, to_state, at, reason,"
        " failure_rate, calls, failures, config_version, received_at"
    )
    started = time.monotonic()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY circuits_transition ({columns}) FROM STDIN") as copy:
            for i in range(rows):
                at = END - step * (i + 1)
                copy.write_row(
                    (
                        instances[i % 10],
                        circuits[i % 20],
                        0,
                        i,
                        STATES[i % 3],
                        STATES[(i + 1) % 3],
                        at,
                        "failure_rate",
                        (i % 100) / 100,
                        100 + i % 50,
                        i % 50,
                        1,
                        at + timedelta(seconds=2),
                    )
                )
        cursor.execute("ANALYZE circuits_transition")
    print(f"loaded {rows:,} transitions with COPY in {time.monotonic() - started:.1f} s")
    viewer = User.objects.create_user("viewer", password="bench-pw-123!")
    viewer.groups.add(Group.objects.get(name="viewer"))
    return create_api_token(viewer)[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakRss(threading.Thread):
    """Samples a process's VmRSS every 20 ms until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_kb(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_kb(self.pid))


def run_once(url: str, token: str, fmt: str, pid: int) -> dict[str, float]:
    import httpx

    params = {
        "format": fmt,
        "since": (END - timedelta(days=DAYS + 1)).isoformat(),
        "until": END.isoformat(),
    }
    before = rss_kb(pid)
    sampler = PeakRss(pid)
    sampler.start()
    lines = size = 0
    first = 0.0
    started = time.monotonic()
    client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=300)
    with client, client.stream("GET", f"{url}/api/v1/transitions/export/", params=params) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw(1 << 20):
            if not first:
                first = time.monotonic() - started
            lines += chunk.count(b"\n")
            size += len(chunk)
    elapsed = time.monotonic() - started
    sampler.done.set()
    sampler.join()
    rows = lines - (1 if fmt == "csv" else 0)
    return {
        "rows": rows,
        "rows_per_s": rows / elapsed,
        "seconds": elapsed,
        "first_ms": first * 1000,
        "mb": size / 1e6,
        "growth_mb": (sampler.peak - before) / 1024,
        "rss_mb": before / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    prepare_database(db_url)
    setup_django(db_url)
    token = seed(args.rows)

    from tests.e2e.conftest import ControlPlaneProcess, server_env

    env = server_env(DEBUG="0", SECRET_KEY="bench-export-not-secret", REDIS_URL="")
    env["DATABASE_URL"] = db_url
    server = ControlPlaneProcess(env)
    server.start()
    try:
        assert server.pid is not None
        measure(server, token, args.runs, args.rows, "as migrated")
    finally:
        server.stop()
    return 0


def measure(server: Any, token: str, runs_per_format: int, rows: int, label: str) -> None:
    print(f"{label}:")
    run_once(server.url, token, "csv", server.pid)  # warm-up
    for fmt in ("csv", "jsonl"):
        runs = [run_once(server.url, token, fmt, server.pid) for _ in range(runs_per_format)]
        assert all(r["rows"] == rows for r in runs), runs
        median = statistics.median(r["rows_per_s"] for r in runs)
        each = ", ".join(f"{r['rows_per_s']:,.0f}" for r in runs)
        print(
            f"{fmt:>7}: {median:,.0f} rows/s median of {runs_per_format} ({each});"
            f" {runs[0]['mb']:.0f} MB body; first bytes after"
            f" {statistics.median(r['first_ms'] for r in runs):.0f} ms;"
            f" server RSS {runs[0]['rss_mb']:.0f} MB before, peak growth"
            f" {max(r['growth_mb'] for r in runs):.1f} MB"
            f" -> {'meets' if median >= GOAL_ROWS_PER_SECOND else 'misses'} the goal"
            f" ({GOAL_ROWS_PER_SECOND:,} rows/s)"
        )


if __name__ == "__main__":
    raise SystemExit(main())

"""The soak: real agents with tripping breakers for N minutes against a real control
plane (uvicorn, a Celery worker and beat), with faults injected on a schedule.

    make soak MINUTES=10
    python -m tests.reliability.soak --minutes 10 --every 60

Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL). The database is migrated and
the run reports as a service of its own (``soak-<time>``), so earlier runs' data stays
and is not counted. At the end it prints: transitions produced, acknowledged and
stored (lost, duplicated, gaps), the 5xx answers the agents got, the cost of each
fault (seconds /healthz did not answer 200, syncs retried), alert notifications
(sent, and deliveries the webhook receiver got twice), and the resident memory of
every process at the start and the end. The exit status is 1 when a transition was
lost, duplicated or altered.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.faults import TcpProxy
from tests.reliability.processes import ROOT, CeleryProcess, port_of, rss_mb, through

WEBHOOK_SECRET = "soak-webhook-secret-0123456789"


# -- the pieces -----------------------------------------------------------------------


class Receiver:
    """The webhook receiver: counts deliveries, and the same body arriving twice."""

    def __init__(self) -> None:
        self.bodies: Counter[bytes] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.bodies[body] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def counts(self) -> tuple[int, int]:
        """(deliveries, of which repeats of a body already received)."""
        with self.lock:
            total = sum(self.bodies.values())
            return total, total - len(self.bodies)


class HealthWatch:
    """Polls /healthz every ``interval`` s; each poll without a 200 in time is down."""

    def __init__(self, port: int, interval: float = 0.5) -> None:
        self.port = port
        self.interval = interval
        self.polls: list[tuple[float, bool]] = []
        self.degraded: list[tuple[float, bool]] = []  # 200, but a dependency is down
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.monotonic()
            ok = degraded = False
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                ok = response.status == 200
                degraded = ok and json.loads(response.read()).get("status") != "ok"
                conn.close()
            self.polls.append((started, ok))
            self.degraded.append((started, not degraded))

    def down_between(self, start: float, end: float, *, degraded: bool = False) -> float:
        """Seconds without a good poll in [start, end]: from each failed poll to the next
        good one (or ``end``); with ``degraded``, of answers naming a dependency down."""
        down = 0.0
        failing: float | None = None
        for at, ok in list(self.degraded if degraded else self.polls):
            if at < start:
                continue
            if at > end:
                break
            if not ok and failing is None:
                failing = at
            elif ok and failing is not None:
                down += at - failing
                failing = None
        if failing is not None:
            down += end - failing
        return down

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class FaultRecord:
    name: str
    at: float
    held: float = 0.0
    down: float = 0.0
    notes: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="switchyard-soak-")
        self.service_name = f"soak-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        self.receiver = Receiver()
        self.faults: list[FaultRecord] = []
        self.agent_procs: list[subprocess.Popen[bytes]] = []
        self.memory: dict[str, list[float | None]] = {}
        self.pg = TcpProxy(port_of(os.environ["DATABASE_URL"], 5432))
        self.redis = TcpProxy(port_of(os.environ["REDIS_URL"], 6379))
        self.restarts: Counter[str] = Counter()  # processes replaced by faults

    # -- set-up ---------------------------------------------------------------------

    def setup_database(self) -> str:
        from django.core.management import call_command

        from controlplane.alerts.models import AlertRule, Channel
        from controlplane.circuits.auth import create_agent_token
        from controlplane.circuits.models import Service

        call_command("migrate", verbosity=0, interactive=False)
        service = Service.objects.create(name=self.service_name)
        channel = Channel.objects.create(
            name=f"{self.service_name} hook",
            kind="webhook",
            config={"url": self.receiver.url, "secret": WEBHOOK_SECRET},
        )
        rule = AlertRule.objects.create(
            name=f"{self.service_name} open",
            kind="open_too_long",
            params={"duration": 2},
            service=service,
        )
        rule.channels.set([channel])
        self.rule_id = rule.pk
        return create_agent_token(service)[1]

    def server_env(self) -> dict[str, str]:
        """The control plane's processes reach PostgreSQL and Redis through proxies, so
        that the faults cut them off alone (this process keeps its direct connection)."""
        env = dict(os.environ)
        env.pop("CELERY_BROKER_URL", None)
        env.update(
            DATABASE_URL=through(os.environ["DATABASE_URL"], self.pg.port),
            REDIS_URL=through(os.environ["REDIS_URL"], self.redis.port),
            DEBUG="0",
            SECRET_KEY=os.environ.get("SECRET_KEY") or os.urandom(24).hex(),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SWITCHYARD_REDIS_PREFIX=f"soak-{os.getpid()}",
            PYTHONPATH=str(ROOT),
            LOG_LEVEL="WARNING",
            SWITCHYARD_ALERT_INTERVAL="5",
            SWITCHYARD_ALERT_CLAIM_TTL="10",
        )
        return env

    def start(self, token: str) -> None:
        from tests.e2e.conftest import ControlPlaneProcess

        env = self.server_env()
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        client.delete("celery", "unacked", "unacked_index")  # no tasks of an earlier run
        client.close()
        self.server = ControlPlaneProcess(env)
        self.server.log_path = str(Path(self.dir) / "web.log")
        self.server.start()
        self.worker = CeleryProcess("worker", env, self.dir).start()
        self.beat = CeleryProcess("beat", env, self.dir).start()
        self.health = HealthWatch(self.server.port)
        agent_env = dict(os.environ, SWITCHYARD_TOKEN=token, PYTHONPATH=str(ROOT))
        for i in range(self.args.processes):
            out = Path(self.dir) / f"agents-{i}.json"
            log = open(Path(self.dir) / f"agents-{i}.log", "ab")  # noqa: SIM115
            self.agent_procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.reliability.fleet",
                        "--url",
                        self.server.url,
                        "--service",
                        self.service_name,
                        "--agents",
                        str(self.args.agents),
                        "--breakers",
                        str(self.args.breakers),
                        "--seed",
                        str(100 + i),
                        "--name",
                        f"soak{i}",
                        "--out",
                        str(out),
                    ],
                    cwd=ROOT,
                    env=agent_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def processes(self) -> dict[str, int | None]:
        pids: dict[str, int | None] = {
            "web (uvicorn)": self.server.pid,
            "celery worker": self.worker.pid,
            "celery beat": self.beat.pid,
        }
        for i, proc in enumerate(self.agent_procs):
            pids[f"agents {i}"] = proc.pid
        return pids

    def note_memory(self) -> None:
        for name, pid in self.processes().items():
            self.memory.setdefault(name, []).append(rss_mb(pid))

    # -- faults ---------------------------------------------------------------------

    def fault_web_kill(self, record: FaultRecord) -> None:
        self.server.kill()
        self.hold(record)
        self.server.start()
        self.restarts["web (uvicorn)"] += 1

    def fault_worker_kill(self, record: FaultRecord) -> None:
        self.worker.kill()
        self.hold(record)
        self.worker = CeleryProcess("worker", self.worker.env, self.dir).start()
        self.restarts["celery worker"] += 1

    def fault_proxy(self, proxy: TcpProxy, how: str) -> Any:
        def fault(record: FaultRecord) -> None:
            getattr(proxy, how)()
            try:
                self.hold(record)
            finally:
                proxy.restore()

        return fault

    def hold(self, record: FaultRecord) -> None:
        started = time.monotonic()
        time.sleep(self.args.hold)  # the fault lasts this long, by design
        record.held = time.monotonic() - started

    def fault_schedule(self) -> list[tuple[str, Any]]:
        faults = {
            "web-kill": ("web server SIGKILL + restart", self.fault_web_kill),
            "pg-gone": ("PostgreSQL gone", self.fault_proxy(self.pg, "cut")),
            "redis-hung": ("Redis hung", self.fault_proxy(self.redis, "hang")),
            "worker-kill": ("celery worker SIGKILL + restart", self.fault_worker_kill),
            "pg-hung": ("PostgreSQL hung", self.fault_proxy(self.pg, "hang")),
            "redis-gone": ("Redis gone", self.fault_proxy(self.redis, "cut")),
        }
        names = self.args.faults.split(",") if self.args.faults else list(faults)
        unknown = [n for n in names if n not in faults]
        if unknown:
            raise SystemExit(f"--faults: unknown {unknown}; choose from {', '.join(faults)}")
        return [faults[n] for n in names]

    # -- the run --------------------------------------------------------------------

    def run(self) -> int:
        token = self.setup_database()
        self.start(token)
        began = self.began = time.monotonic()
        end = began + self.args.minutes * 60
        print(
            f"soak: {self.args.minutes:g} min, service {self.service_name}, "
            f"{self.args.processes} agent processes x {self.args.agents} agents x "
            f"{self.args.breakers} breakers, a fault every {self.args.every:g} s "
            f"(held {self.args.hold:g} s); logs in {self.dir}",
            flush=True,
        )
        try:
            time.sleep(min(10.0, self.args.minutes * 60 / 4))  # warm-up
            self.note_memory()
            schedule = self.fault_schedule()
            next_fault = time.monotonic() + min(self.args.every, 20.0)
            k = 0
            while time.monotonic() < end - self.args.hold - 20:
                if time.monotonic() >= next_fault:
                    name, inject = schedule[k % len(schedule)]
                    record = FaultRecord(name, time.monotonic())
                    print(f"soak: {record.at - began:6.0f} s  {name}", flush=True)
                    inject(record)
                    self.faults.append(record)
                    k += 1
                    next_fault += self.args.every
                time.sleep(0.5)
            while time.monotonic() < end:
                time.sleep(0.5)
            self.note_memory()
        finally:
            records = self.stop_agents()
            self.health.stop()
            self.beat.stop()
            self.worker.stop()
            self.server.stop()
            self.pg.close()
            self.redis.close()
        return self.report(records, time.monotonic() - began)

    def stop_agents(self) -> list[dict[str, Any]]:
        for proc in self.agent_procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        records: list[dict[str, Any]] = []
        for i, proc in enumerate(self.agent_procs):
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            out = Path(self.dir) / f"agents-{i}.json"
            if out.exists():
                records.append(json.loads(out.read_text()))
            else:
                print(f"soak: agent process {i} left no record (see its log)", flush=True)
        return records

    def report(self, records: list[dict[str, Any]], elapsed: float) -> int:
        from controlplane.alerts.models import Notification
        from tests.reliability.checks import tally

        agents = [a for r in records for a in r["agents"]]
        counted = tally(self.service_name, agents)
        statuses: Counter[int] = Counter()
        for a in agents:
            statuses.update({int(k): v for k, v in a["statuses"].items()})
        syncs_ok = sum(a["syncs_ok"] for a in agents)
        syncs_failed = sum(a["syncs_failed"] for a in agents)
        watch_failed = sum(a["watch_failed"] for a in agents)
        calls = sum(r["calls"] for r in records)
        notes = Counter(
            Notification.objects.filter(alert__rule_id=self.rule_id).values_list(
                "status", flat=True
            )
        )
        received, repeats = self.receiver.counts()
        lines = [
            "",
            f"SOAK REPORT ({elapsed / 60:.1f} min, service {self.service_name})",
            f"  agents: {len(agents)} in {len(records)} processes; protected calls {calls}",
            f"  transitions sent (produced) {counted.produced}, acknowledged {counted.acked}, "
            f"stored {counted.stored}",
            f"  lost {counted.lost}, duplicated {counted.duplicated}, altered {counted.altered}, "
            f"gaps {counted.gaps}, still pending {counted.pending}, dropped {counted.dropped}",
            f"  syncs ok {syncs_ok}, failed and retried {syncs_failed}; watches failed "
            f"{watch_failed}",
            f"  answers by status: {dict(sorted(statuses.items()))}; "
            f"5xx: {sum(n for s, n in statuses.items() if s >= 500)}",
            f"  alert notifications: {dict(notes)}; webhook deliveries {received}, "
            f"of which repeats {repeats}",
            f"  faults ({len(self.faults)}):",
        ]
        for n, f in enumerate(self.faults):
            until = self.faults[n + 1].at if n + 1 < len(self.faults) else time.monotonic()
            down = self.health.down_between(f.at, until)
            degraded = self.health.down_between(f.at, until, degraded=True)
            window = [
                (ok, status)
                for a in agents
                for started, _end, ok, status in a["exchanges"]
                if f.at <= started < until
            ]
            retried = sum(1 for ok, _ in window if not ok)
            errors = sum(1 for _, status in window if status and status >= 500)
            lines.append(
                f"    {f.at - self.began:7.0f} s  {f.name}: held {f.held:.1f} s, "
                f"/healthz down {down:.1f} s, degraded {degraded:.1f} s, "
                f"syncs retried {retried}, 5xx {errors}"
            )
        lines.append("  resident memory, MB (after the warm-up -> at the end):")
        for name, values in self.memory.items():
            start = values[0]
            last = values[-1] if len(values) > 1 else None
            restarted = self.restarts[name]
            kills = "kill" if restarted == 1 else "kills"
            note = f"  (a new process after {restarted} {kills})" if restarted else ""
            lines.append(f"    {name:16} {_mb(start)} -> {_mb(last)}{note}")
        for problem in counted.problems:
            lines.append(f"  PROBLEM {problem}")
        print("\n".join(lines), flush=True)
        return 0 if counted.clean and not counted.problems else 1


def _mb(value: float | None) -> str:
    return f"{value:7.1f}" if value is not None else "    gone"


def create_database(url: str) -> None:
    """Create the database of ``url`` if the server does not have it yet."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"soak: created the database {name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds each fault lasts")
    parser.add_argument(
        "--faults",
        default="",
        help="comma-separated, in order (default all): web-kill, pg-gone, redis-hung, "
        "worker-kill, pg-hung, redis-gone",
    )
    parser.add_argument("--processes", type=int, default=3, help="agent processes")
    parser.add_argument("--agents", type=int, default=2, help="agents per process")
    parser.add_argument("--breakers", type=int, default=4, help="breakers per agent")
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        parser.error("DATABASE_URL must name a PostgreSQL database")
    if not os.environ.get("REDIS_URL"):
        parser.error("REDIS_URL must be set")
    create_database(os.environ["DATABASE_URL"])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    os.environ.setdefault("DEBUG", "1")  # this driver process only (no SECRET_KEY needed)
    import django

    django.setup()
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())

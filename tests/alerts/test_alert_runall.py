"""`make run`'s supervisor on embedded defaults (SQLite, filesystem broker, no Redis):
the web server answers, the worker runs beat's alert evaluation, and SIGINT (Ctrl-C)
stops all three processes."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def wait_for(predicate, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


@pytest.mark.timeout(240)
def test_runall_serves_runs_periodic_work_and_stops_everything_on_ctrl_c(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'run.sqlite3'}",
        CELERY_FILESYSTEM_DIR=str(tmp_path / "celery"),
        DEBUG="1",
        SWITCHYARD_ALERT_INTERVAL="3",
        PYTHONPATH=str(ROOT),
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )  # fmt: skip
    port, log = free_port(), tmp_path / "runall.log"
    with open(log, "ab") as out:  # O_APPEND: four processes write to it
        proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane.runall", "--port", str(port),
             "--beat-schedule", str(tmp_path / "beat-schedule")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, 90, "the web server", log)
        wait_for(
            lambda: re.search(r"evaluate_alerts_task\[[^]]+\] succeeded", log.read_text()),
            120, "beat's alert evaluation to run in the worker", log,
        )  # fmt: skip
        pids = [int(p) for p in re.findall(r"(?:web|worker|beat) pid (\d+)", log.read_text())]
        assert len(pids) == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(p) for p in pids), 30, "every child to exit", log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

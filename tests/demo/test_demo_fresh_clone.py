"""`make run` from a clean clone, as a newcomer runs it: embedded mode (SQLite, the
filesystem broker, no Redis), the demo fleet sped up tenfold. The server answers,
the demo circuits appear, one trips, an alert fires and reaches the demo webhook,
each within a bounded time; every child process is gone afterwards.

The virtualenv step is skipped (RUN_DEPS=) and this interpreter's venv is reused.
With Debian's Chromium present, the test also signs in as the demo viewer and
takes the README's screenshot (copied to docs/dashboard.png by `make screenshot`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.browser import CHROMIUM, launch, screenshot_dir

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshot: refreshed from this test's run when SWITCHYARD_README_SCREENSHOT=1
# (`make screenshot`), so that an ordinary test run leaves the working tree unchanged.
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, log: Path) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"no {what} within {timeout:g} s:\n{log.read_text()[-6000:]}")


def get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return bytes(answer.read())
    except OSError:
        return None


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not migrated yet, or locked past the timeout
        return []


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def free_port_pair() -> int:
    """A port P such that P (the web server) and P + 1 (the demo webhook) are free."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two adjacent free ports")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clean clone of this repository's committed HEAD."""
    target = tmp_path / "switchyard"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True, timeout=120)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    subprocess.run(["git", "checkout", "-q", head], cwd=target, check=True, timeout=60)
    return target


@pytest.fixture
def make_run(clone: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`make run` in the clone, in its own process group; killed whatever happens."""
    port, log = free_port_pair(), tmp_path / "make-run.log"
    # A newcomer's environment: nothing of this test run (databases, Django, Redis).
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(SWITCHYARD_DEMO_SPEED="10", SWITCHYARD_ALERT_INTERVAL="2")
    venv = Path(sys.executable).parent.parent
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["make", "run", "RUN_DEPS=", f"VENV={venv}", f"PORT={port}"],
            cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_make_run_from_a_clean_clone_trips_a_circuit_and_fires_an_alert(
    make_run: tuple[subprocess.Popen[bytes], int, Path], clone: Path
) -> None:
    proc, port, log = make_run
    base, db = f"http://127.0.0.1:{port}", clone / "var" / "switchyard.sqlite3"
    started = time.monotonic()

    login = wait_for("login page", lambda: get(f"{base}/login/"), 180, log)
    assert b'name="password"' in login
    t_page = time.monotonic() - started
    wait_for(
        "dashboard URL in the output", lambda: f"Dashboard: {base}/" in log.read_text(), 30, log
    )
    text = log.read_text()
    passwords = dict(re.findall(r"username: (\w+)\s+password: (\S+)", text))
    assert set(passwords) == {"admin", "operator", "viewer"}, text[-3000:]

    circuits = wait_for(
        "demo circuits",
        lambda: len(query(db, "SELECT id FROM circuits_circuit")) >= 6 and query(
            db, "SELECT s.name || '/' || c.name FROM circuits_circuit c "
            "JOIN circuits_service s ON s.id = c.service_id ORDER BY 1"),
        60, log,
    )  # fmt: skip
    assert {"checkout/payments", "payments/card_network", "search/index"} <= {
        row[0] for row in circuits
    }
    wait_for(
        "trip", lambda: query(db, "SELECT 1 FROM circuits_transition WHERE to_state = 'open'"),
        60, log,
    )  # fmt: skip
    t_trip = time.monotonic() - started
    wait_for(
        "firing alert", lambda: query(db, "SELECT 1 FROM alerts_alert WHERE fired_at IS NOT NULL"),
        90, log,
    )  # fmt: skip
    t_alert = time.monotonic() - started
    hooks = wait_for(
        "notification at the demo webhook",
        lambda: json.loads(get(f"http://127.0.0.1:{port + 1}/json") or b"[]"),
        60, log,
    )  # fmt: skip
    assert any(body["event"] == "firing" for _, body in hooks)
    assert "demo webhook: FIRING" in log.read_text()
    print(f"\nfirst page {t_page:.1f} s, first trip {t_trip:.1f} s, first alert {t_alert:.1f} s")

    if Path(CHROMIUM).exists():
        screenshot(base, "viewer", passwords["viewer"])

    children = descendants(proc.pid)
    assert len(children) >= 8, children  # make's shell, runall, web, worker, beat, fleet
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    wait_for("every child to exit", lambda: not any(alive(pid) for pid in children), 30, log)
    assert "runall: stopping" in log.read_text()


def screenshot(base: str, username: str, password: str) -> None:
    """The overview as the demo viewer sees it with a circuit open (the README's picture)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/")
            page.fill('input[name="username"]', username)
            page.fill('input[name="password"]', password)
            page.click('button[type="submit"]')
            page.wait_for_url(f"{base}/")
            page.wait_for_selector('#live-status[data-live="on"]', timeout=15_000)
            page.wait_for_selector(
                '[data-circuit][data-state="open"], [data-circuit][data-state="half_open"]',
                timeout=60_000,
            )
            shot = screenshot_dir() / "demo-overview.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("SWITCHYARD_README_SCREENSHOT") == "1":
                shutil.copyfile(shot, README_SCREENSHOT)
        finally:
            browser.close()

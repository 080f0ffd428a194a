"""Shared by the browser test and benchmarks/bench_dashboard.py: Debian's Chromium
driven by Playwright (never a downloaded browser), and the stand-in application."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def screenshot_dir() -> Path:
    """Where screenshots go: $SWITCHYARD_SCREENSHOTS, else artifacts/screenshots."""
    path = Path(os.environ.get("SWITCHYARD_SCREENSHOTS", ROOT / "artifacts" / "screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch(playwright: Any) -> Any:
    """Headless Chromium from /usr/bin/chromium."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def login(page: Any, base_url: str, username: str, password: str) -> None:
    """Open the overview, get sent to the login page, log in, land on the overview."""
    page.goto(f"{base_url}/")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{base_url}/")


class AppProcess:
    """tests/dashboard/app_process.py in a subprocess: breakers and the agent."""

    def __init__(self, url: str, token: str, service: str, names: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        script = str(Path(__file__).with_name("app_process.py"))
        self.proc = subprocess.Popen(
            [sys.executable, script, url, token, service, *names],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"application exited with {self.proc.poll()}")
        return line.strip()

    def command(self, line: str) -> str:
        """Send one command and return its one-line answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.readline()

    def state(self, name: str) -> str:
        """The application's own view of breaker ``name``."""
        return self.command(f"state {name}").removeprefix("ok ")

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

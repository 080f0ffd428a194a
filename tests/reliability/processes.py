"""Celery worker and beat as processes of their own (a process group each, so SIGKILL
takes the whole of one), and the memory of a process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]


class CeleryProcess:
    """``celery -A controlplane worker`` (threads pool) or ``beat``, in its own group."""

    def __init__(self, kind: str, env: dict[str, str], workdir: str | None = None) -> None:
        assert kind in ("worker", "beat")
        self.kind = kind
        self.env = env
        self.dir = workdir or tempfile.mkdtemp(prefix="switchyard-celery-")
        self.log = Path(self.dir) / f"{kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        if self.kind == "worker":
            args = ["worker", "--pool", "threads", "--concurrency", "4", "--without-gossip",
                    "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"]  # fmt: skip
        else:
            args = ["beat", "--schedule", str(Path(self.dir) / "beat-schedule"), "--loglevel",
                    "INFO"]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "controlplane", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL, at once, the process and anything it started."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process and its children, MB (None when it is gone)."""
    if pid is None:
        return None
    total = 0
    pids = [pid, *_children(pid)]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            if p == pid:
                return None
    return total / 1024


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            for child in text:
                out.append(int(child))
                out.extend(_children(int(child)))
    except OSError:
        pass
    return out


def through(url: str, port: int) -> str:
    """``url`` (postgres://, redis://) with its host and port replaced by 127.0.0.1:port
    (a proxy's)."""
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host))


def port_of(url: str, default: int) -> int:
    return urlsplit(url).port or default

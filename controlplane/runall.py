"""Run the whole control plane in the foreground: the ASGI web server, a Celery worker
and Celery beat, as child processes; Ctrl-C (or SIGTERM) stops all three.

``python -m controlplane.runall [--host H] [--port P]`` is what ``make run`` starts.
Without CELERY_BROKER_URL or REDIS_URL the worker and beat share kombu's filesystem
broker under var/celery, so no server is needed; with them they use Redis.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 10.0


def commands(host: str, port: int, beat_schedule: Path) -> dict[str, list[str]]:
    """The child processes by name."""
    py = sys.executable
    beat_schedule.parent.mkdir(parents=True, exist_ok=True)
    return {
        "web": [py, "-m", "uvicorn", "controlplane.asgi:application", "--host", host,
                "--port", str(port), "--lifespan", "off"],
        "worker": [py, "-m", "celery", "-A", "controlplane", "worker", "--loglevel", "INFO",
                   "--concurrency", "2", "--without-gossip", "--without-mingle"],
        "beat": [py, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "INFO",
                 "--schedule", str(beat_schedule)],
    }  # fmt: skip


def stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child still running, then SIGKILL whatever outlives the timeout."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> int:
    """Start the three processes and supervise them; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--beat-schedule", type=Path, default=ROOT / "var" / "celerybeat-schedule",
        help="file where beat keeps the last run of each periodic task",
    )  # fmt: skip
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children = {
        name: subprocess.Popen(cmd, cwd=ROOT)
        for name, cmd in commands(args.host, args.port, args.beat_schedule).items()
    }
    print("runall: " + ", ".join(f"{n} pid {c.pid}" for n, c in children.items()), flush=True)
    status = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"runall: {name} exited with {child.returncode}; stopping", flush=True)
                    status = child.returncode or 1
                    stopping = True
            time.sleep(0.2)
    finally:
        stop(children)
    return status


if __name__ == "__main__":
    sys.exit(main())

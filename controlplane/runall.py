"""Run the whole control plane in the foreground: the ASGI web server, a Celery worker
and Celery beat, and (with ``--demo``) the demo fleet, as child processes; Ctrl-C (or
SIGTERM) stops every one of them.

``python -m controlplane.runall [--host H] [--port P] [--demo]`` is what ``make run``
starts. Without CELERY_BROKER_URL or REDIS_URL the worker and beat share kombu's
filesystem broker under var/celery, so no server is needed; with them they use Redis.
The demo fleet is ``manage.py demo_setup``, a webhook receiver on port P+1 that shows
the alerts, and one process per simulated service (controlplane.demo).
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from controlplane.demo import fleet

ROOT = Path(__file__).resolve().parent.parent
WEB_START_TIMEOUT = 120.0


def commands(
    host: str, port: int, beat_schedule: Path, quiet: bool = False
) -> dict[str, list[str]]:
    """The child processes of the control plane by name; ``quiet`` drops the access log
    and Celery's per-task lines (the demo fleet prints what matters)."""
    py = sys.executable
    beat_schedule.parent.mkdir(parents=True, exist_ok=True)
    level = "WARNING" if quiet else "INFO"
    celery = [py, "-m", "celery", "-A", "controlplane", *(["--quiet"] if quiet else [])]
    return {
        "web": [py, "-m", "controlplane.serve", "--host", host,
                "--port", str(port), "--lifespan", "off",
                *(["--no-access-log"] if quiet else [])],
        "worker": [*celery, "worker", "--loglevel", level, "--concurrency", "2",
                   "--without-gossip", "--without-mingle"],
        "beat": [*celery, "beat", "--loglevel", level, "--schedule", str(beat_schedule)],
    }  # fmt: skip


def say(message: str) -> None:
    print(f"runall: {message}", flush=True)


def web_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Start the processes and supervise them; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--beat-schedule", type=Path, default=ROOT / "var" / "celerybeat-schedule",
        help="file where beat keeps the last run of each periodic task",
    )  # fmt: skip
    parser.add_argument("--demo", action="store_true", help="also run the demo fleet")
    parser.add_argument(
        "--quiet", action="store_true", help="no access log, Celery logs warnings only"
    )
    parser.add_argument(
        "--demo-dir", type=Path, default=ROOT / "var" / "demo",
        help="where demo_setup leaves the fleet's tokens (mode 0600)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    web_url = f"http://{local}:{args.port}"
    receiver_port = args.port + 1
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    fleet_file = args.demo_dir / "fleet.json"
    if args.demo:
        say("setting up the demo data (services, users, alert rules, webhook channel)")
        fleet.setup(fleet_file, f"http://127.0.0.1:{receiver_port}/hook")
    children: dict[str, subprocess.Popen[bytes]] = {}
    status = 0
    try:
        for name, cmd in commands(args.host, args.port, args.beat_schedule, args.quiet).items():
            say(f"starting {name}")
            children[name] = subprocess.Popen(cmd, cwd=ROOT)
        say(", ".join(f"{n} pid {c.pid}" for n, c in children.items()))
        deadline = time.monotonic() + WEB_START_TIMEOUT
        while not stopping and not web_answers(web_url):
            if children["web"].poll() is not None or time.monotonic() > deadline:
                say("the web server did not come up; stopping")
                return 1
            time.sleep(0.2)
        if args.demo and not stopping:
            say("starting the demo fleet")
            children.update(
                fleet.start(fleet.commands(fleet_file, web_url, "127.0.0.1", receiver_port))
            )
            say(", ".join(f"{n} pid {c.pid}" for n, c in children.items() if n[:5] == "demo-"))
        if not stopping:
            lines = [
                f"Switchyard is up. Dashboard: {web_url}/  (admin: {web_url}/admin/, "
                f"API docs: {web_url}/api/docs/)"
            ]
            if args.demo:
                lines.append(
                    f"Demo alerts arrive at the webhook page http://127.0.0.1:{receiver_port}/ "
                    "and in this console ('demo webhook: ...')."
                )
            lines.append(
                "Sign in as admin, operator or viewer with the passwords printed when they "
                "were created (above, on the first run). Ctrl-C stops everything."
            )
            print("\n".join(["", *lines, ""]), flush=True)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    say(f"{name} exited with {child.returncode}; stopping")
                    status = child.returncode or 1
                    stopping = True
            time.sleep(0.2)
    finally:
        say("stopping " + ", ".join(children))
        fleet.stop(children)
    return status


if __name__ == "__main__":
    sys.exit(main())

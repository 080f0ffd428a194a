"""Run the demo fleet alone against a control plane that is already up.

``python -m controlplane.demo.fleet --url http://web:8000`` runs ``manage.py demo_setup``
(the receiver's URL as the channel's), then the webhook receiver and one process per
simulated service, and stops them all on SIGTERM or SIGINT. The `demo` profile of
docker-compose.yml runs this; ``controlplane.runall --demo`` starts the same children.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent.parent
STOP_TIMEOUT = 10.0
Child = tuple[list[str], dict[str, str]]


def setup(fleet_file: Path, receiver_url: str) -> None:
    """``manage.py demo_setup``: demo data, fresh agent tokens into ``fleet_file``."""
    subprocess.run(
        [sys.executable, "manage.py", "demo_setup", "--output", str(fleet_file),
         "--receiver-url", receiver_url],
        cwd=ROOT, check=True,
    )  # fmt: skip


def commands(
    fleet_file: Path, web_url: str, receiver_host: str, receiver_port: int
) -> dict[str, Child]:
    """The fleet's processes by name: (argv, extra environment)."""
    fleet = json.loads(fleet_file.read_text())
    py = sys.executable
    children: dict[str, Child] = {
        "demo-webhook": (
            [py, "-m", "controlplane.demo.receiver", "--host", receiver_host,
             "--port", str(receiver_port)],
            {"SWITCHYARD_DEMO_WEBHOOK_SECRET": fleet["webhook_secret"]},
        )
    }  # fmt: skip
    for service, token in fleet["tokens"].items():
        children[f"demo-{service}"] = (
            [py, "-m", "controlplane.demo.service", service],
            {"SWITCHYARD_URL": web_url, "SWITCHYARD_TOKEN": token, "SWITCHYARD_SERVICE": service},
        )
    return children


def start(children: dict[str, Child]) -> dict[str, subprocess.Popen[bytes]]:
    """Start each child with its extra environment."""
    started = {}
    for name, (cmd, env) in children.items():
        print(f"demo: starting {name}", flush=True)
        started[name] = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    return started


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
    """Set up, start and supervise the fleet; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the control plane's base URL")
    parser.add_argument("--receiver-host", default="127.0.0.1", help="where the receiver listens")
    parser.add_argument("--receiver-port", type=int, default=8001)
    parser.add_argument(
        "--receiver-url", help="the receiver's URL as the control plane's workers reach it "
        "(default http://127.0.0.1:PORT/hook)",
    )  # fmt: skip
    parser.add_argument("--fleet-file", type=Path, default=ROOT / "var" / "demo" / "fleet.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    setup(args.fleet_file, args.receiver_url or f"http://127.0.0.1:{args.receiver_port}/hook")
    children = start(
        commands(args.fleet_file, args.url.rstrip("/"), args.receiver_host, args.receiver_port)
    )
    status = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"demo: {name} exited with {child.returncode}; stopping", flush=True)
                    status, stopping = child.returncode or 1, True
            time.sleep(0.2)
    finally:
        stop(children)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""The README's PredictionService example runs as written: alone (no SWITCHYARD_URL),
and as a connected application whose breakers then appear in the control plane."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Circuit, Service, Transition
from tests.e2e.conftest import ControlPlaneProcess, server_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- example: prediction-service"
HTTPX_MARKER = "<!-- example: httpx-client"


def example(marker: str = MARKER) -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme.split(marker, 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, "no python block after the example marker"
    return match.group(1)


def run(script: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    return subprocess.run(
        [sys.executable, str(script)], cwd=script.parent, capture_output=True, text=True,
        timeout=60, env={**base, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip


def test_the_example_runs_alone(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(example())
    result = run(script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "{'score': 0.9, 'features': {'user_id': 'user-1', 'default': True}}"
    assert lines[-1] == "feature_store is open"


@pytest.fixture
def server(transactional_db: None) -> Iterator[ControlPlaneProcess]:
    plane = ControlPlaneProcess(server_env())
    plane.start()
    yield plane
    plane.stop()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_example_reports_its_breakers(server: ControlPlaneProcess, tmp_path: Path) -> None:
    token = create_agent_token(Service.objects.create(name="predictions"))[1]
    script = tmp_path / "app.py"
    script.write_text(example())
    result = run(
        script, SWITCHYARD_URL=server.url, SWITCHYARD_TOKEN=token, SWITCHYARD_SERVICE="predictions"
    )
    assert result.returncode == 0, result.stderr
    # The agent flushes once at exit: both breakers and the trip reach the server.
    assert wait_for(lambda: Circuit.objects.filter(service__name="predictions").count() == 2, 10)
    names = set(Circuit.objects.values_list("name", flat=True))
    assert names == {"feature_store", "model_service"}
    assert Transition.objects.filter(circuit__name="feature_store", to_state="open").exists()


def test_the_httpx_example_trips_on_a_failing_upstream(tmp_path: Path) -> None:
    """Against a real server on 127.0.0.1 that answers 503: five failures, then the
    circuit is open and the last two requests never reach it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    hits: list[str] = []

    class Down(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Down)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = tmp_path / "app.py"
        script.write_text(example(HTTPX_MARKER))
        result = run(script, INVENTORY_URL=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == [f"{i} 503" for i in range(5)]
    name = f"127.0.0.1:{server.server_address[1]}"
    assert lines[5].startswith(f"5 rejected: circuit {name!r} is open; retry after ")
    assert lines[6].startswith("6 rejected:")
    assert len(hits) == 5

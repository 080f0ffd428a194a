"""``python -m controlplane.serve``: workers that share the connections, supervised.

A real server on 127.0.0.1 with two workers: a burst of keep-alive connections (what a
fleet of agents opens after a deploy) is spread over both workers, where one shared
accept queue lets the first worker awake take them all; a killed worker is replaced;
SIGTERM stops everything; an address in use and bad options are refused at start."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.serve import parse_args
from tests.e2e.conftest import free_port, server_env, wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the workers, and multiprocessing's helper)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _sockets(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in (Path("/proc") / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _tcp(pid: int, port: int, state: str) -> int:
    """Sockets of process ``pid`` on local ``port`` in ``state`` (01 established,
    0A listening)."""
    inodes, count = _sockets(pid), 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (Path("/proc/net") / table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == state and fields[9] in inodes:
                    count += 1
    return count


def _healthy(port: int) -> bool:
    with contextlib.suppress(OSError, http.client.HTTPException):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    return False


def _workers(proc: subprocess.Popen[bytes], port: int) -> list[int]:
    """The children of the supervisor that listen on ``port``."""
    return [pid for pid in _children(proc.pid) if _tcp(pid, port, "0A")]


@pytest.fixture
def served(django_db_setup: None, django_db_blocker: Any) -> Iterator[tuple[Any, int]]:
    with django_db_blocker.unblock():
        env = server_env()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.serve", "--workers", "2", "--port", str(port),
         "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: _healthy(port) and len(_workers(proc, port)) == 2, 60.0), (
            "the server did not come up with two workers"
        )
        yield proc, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_a_burst_of_keep_alive_connections_is_spread_over_the_workers(
    served: tuple[Any, int],
) -> None:
    proc, port = served
    connections = []
    try:
        for _ in range(32):  # opened together, as a fleet reconnecting at once
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            connections.append(sock)
        for sock in connections:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for sock in connections:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        workers = _workers(proc, port)
        held = {pid: _tcp(pid, port, "01") for pid in workers}
        assert sum(held.values()) == 32, held
        # Each socket of the SO_REUSEPORT group gets its share by a hash of the client's
        # address: both workers hold some (all 32 on one has odds of 2 in 2**32).
        assert all(count > 0 for count in held.values()), held
    finally:
        for sock in connections:
            sock.close()


def test_a_killed_worker_is_replaced_and_sigterm_stops_everything(
    served: tuple[Any, int],
) -> None:
    proc, port = served
    first, second = _workers(proc, port)
    os.kill(first, signal.SIGKILL)
    assert wait_for(
        lambda: first not in _workers(proc, port) and len(_workers(proc, port)) == 2, 30.0
    ), _workers(proc, port)
    assert second in _workers(proc, port)
    assert _healthy(port)
    workers = _workers(proc, port)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert f"worker {first} exited" in output, output


def test_an_address_in_use_is_refused_at_start(django_db_setup: None) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "controlplane.serve", "--workers", "2", "--port", str(port)],
            cwd=ROOT, env={**os.environ, "DEBUG": "1"}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers: must be 1-64, got 0"),
        (["--workers", "65"], "--workers: must be 1-64, got 65"),
        (["--port", "0", "--workers", "2"], "--port: 0 (any free port) needs --workers 1"),
        (["--port", "70000"], "--port: must be 0-65535, got 70000"),
        (["--timeout-keep-alive", "0"], "--timeout-keep-alive: must be at least 1, got 0"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_workers_default_to_web_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_WORKERS", "3")
    assert parse_args([]).workers == 3
    monkeypatch.delenv("WEB_WORKERS")
    assert parse_args([]).workers == 1


def test_a_worker_serves_with_what_loading_created_frozen_and_fewer_young_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a worker holds from its start is left out of every collection, and young
    collections are rarer, so that the objects of requests in flight die young: a full
    collection walked everything, 75-230 ms with the GIL held (docs/sync-protocol.md)."""
    import gc

    import uvicorn

    from controlplane import serve

    seen: dict[str, Any] = {}

    def run(self: Any, sockets: list[socket.socket]) -> None:
        app = self.config.loaded_app
        seen["sockets"] = sockets
        seen["frozen"] = gc.get_freeze_count()
        seen["threshold"] = gc.get_threshold()
        seen["app tracked"] = any(o is app for o in gc.get_objects())

    before = gc.get_threshold()
    monkeypatch.setattr(uvicorn.Server, "run", run)
    with socket.socket() as sock:
        try:
            serve._run(parse_args(["--lifespan", "off"]), sock)
        finally:
            gc.unfreeze()
            gc.set_threshold(*before)
        assert seen["sockets"] == [sock]
    assert seen["frozen"] > 10_000
    assert seen["threshold"] == (serve.GC_YOUNG_THRESHOLD, *before[1:])
    assert seen["app tracked"] is False  # loaded before the freeze


def test_an_answer_leaves_in_one_write_and_a_websocket_upgrade_still_works(
    served: tuple[Any, int],
) -> None:
    _, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for _ in range(50):  # one kept-alive connection, as an agent's
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            # The client waits in recv before the answer is sent: a head and a body
            # written apart would wake it with the head alone.
            answer = sock.recv(65536)
            head, _, body = answer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert head.startswith(b"HTTP/1.1 200") and len(body) == length, answer
    # The dashboard's socket without a session: refused by the WebSocket protocol,
    # which the upgrade hands the connection to.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws/dashboard/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 403")


def test_sigterm_answers_held_watches_with_204_instead_of_cancelling_them(
    served: tuple[Any, int],
) -> None:
    """Agents' long polls held when the server stops end at once with a 204 (the agent
    watches again, elsewhere), not cut off at the end of the graceful shutdown."""
    from controlplane.circuits.auth import create_agent_token
    from controlplane.circuits.models import Service

    proc, port = served
    _, raw = create_agent_token(Service.objects.create(name="checkout"))
    watches = []
    try:
        for _ in range(6):  # over both workers
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.request(
                "GET", "/api/v1/agent/watch?since=0", headers={"Authorization": f"Bearer {raw}"}
            )
            watches.append(conn)
        # Held: none of them is answered while the server runs (the hold is 25 s).
        for conn in watches:
            assert conn.sock is not None
            conn.sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                conn.sock.recv(1, socket.MSG_PEEK)
            conn.sock.settimeout(20)
        proc.send_signal(signal.SIGTERM)
        answers = [conn.getresponse() for conn in watches]
        assert [a.status for a in answers] == [204] * 6
        assert all(a.getheader("Connection") == "close" for a in answers)
        assert proc.wait(30) == 0
    finally:
        for conn in watches:
            conn.close()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "Cancel" not in output, output

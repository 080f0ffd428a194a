"""The demo fleet's parts: the schedule, the speed setting, demo_setup (idempotent,
tokens replaced), and the webhook receiver (signed POSTs only)."""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from controlplane.alerts.models import AlertRule, Channel
from controlplane.circuits.auth import authenticate_agent
from controlplane.circuits.models import AgentToken, Service, ShadowEvaluation
from controlplane.demo.scenario import (
    SERVICES,
    Dependency,
    alert_durations,
    breaker_config,
    speed_from_env,
)

ROOT = Path(__file__).resolve().parents[2]


def test_failure_rate_follows_the_phases_and_repeats() -> None:
    dep = Dependency("x", ((10, 0.0), (5, 1.0)))
    assert [dep.failure_rate(t) for t in (0, 9.9, 10, 14.9, 15, 25)] == [0, 0, 1, 1, 0, 1]
    assert dep.failure_rate(1.0, speed=10) == 1.0  # 10 s of schedule in 1 s
    # The story: checkout's payments fail hard from 20 s to 80 s, and recover.
    payments = next(d for d in SERVICES["checkout"] if d.name == "payments")
    assert payments.failure_rate(30) > 0.9 and payments.failure_rate(100) < 0.1


@pytest.mark.parametrize("raw", ["fast", "0", "1000", "nan"])
def test_a_bad_speed_is_a_value_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="SWITCHYARD_DEMO_SPEED"):
        speed_from_env({"SWITCHYARD_DEMO_SPEED": raw})


def test_speed_shortens_the_alert_durations() -> None:
    assert speed_from_env({}) == 1.0
    assert alert_durations(10)["open_too_long"] < alert_durations(1)["open_too_long"] == 30


@pytest.mark.django_db
def test_demo_setup_is_idempotent_and_replaces_the_agent_tokens(tmp_path: Path, capsys) -> None:
    out = tmp_path / "fleet.json"
    call_command("demo_setup", "--output", str(out))
    first = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "username: operator" in printed and "username: viewer" in printed
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert set(first["tokens"]) == set(SERVICES)
    assert User.objects.get(username="viewer").groups.filter(name="viewer").exists()
    assert User.objects.get(username="operator").groups.filter(name="operator").exists()

    call_command("demo_setup", "--output", str(out), "--receiver-url", "http://127.0.0.1:9/hook")
    second = json.loads(out.read_text())
    assert "password" not in capsys.readouterr().out  # shown once, when created
    assert User.objects.filter(username__in=["operator", "viewer"]).count() == 2
    assert AlertRule.objects.filter(name__startswith="demo: ").count() == 3
    channel = Channel.objects.get(name="demo webhook")
    assert channel.config["url"] == "http://127.0.0.1:9/hook"
    assert second["webhook_secret"] == first["webhook_secret"] == channel.config["secret"]
    assert all(rule.channels.filter(pk=channel.pk).exists() for rule in AlertRule.objects.all())
    for name in SERVICES:
        assert authenticate_agent(first["tokens"][name]) is None  # revoked
        assert authenticate_agent(second["tokens"][name]).service.name == name
    assert AgentToken.objects.filter(revoked_at__isnull=True).count() == len(SERVICES)
    assert Service.objects.count() == len(SERVICES)
    # One shadow candidate runs on search/recommendations, started once.
    (evaluation,) = ShadowEvaluation.objects.all()
    assert (evaluation.circuit.service.name, evaluation.circuit.name) == (
        "search",
        "recommendations",
    )
    assert evaluation.ended_at is None and evaluation.config["failure_rate_threshold"] == 0.3
    assert evaluation.circuit.current_config.config == breaker_config(1.0).to_dict()


@pytest.fixture
def receiver() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, SWITCHYARD_DEMO_WEBHOOK_SECRET="s" * 20, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.demo.receiver", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/json", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def post(url: str, body: bytes, signature: str) -> int:
    request = urllib.request.Request(
        f"{url}/hook", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Switchyard-Signature": signature},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_receiver_shows_signed_notifications_and_refuses_others(receiver: str) -> None:
    body = json.dumps({"event": "firing", "alert": {"rule": "r", "service": "s", "circuit": "c",
                                                    "severity": "critical"}}).encode()  # fmt: skip
    good = "sha256=" + hmac.new(b"s" * 20, body, hashlib.sha256).hexdigest()
    assert post(receiver, body, "sha256=" + "0" * 64) == 401
    assert json.loads(urllib.request.urlopen(f"{receiver}/json").read()) == []
    assert post(receiver, body, good) == 204
    page = urllib.request.urlopen(f"{receiver}/").read().decode()
    assert "FIRING [critical] r: s/c" in page and "http" not in page.split("<body>")[1]

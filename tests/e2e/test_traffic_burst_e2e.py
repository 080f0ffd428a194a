"""A burst of failures in a real application shows on the open circuit page within 10 s,
without a reload: breakers and the agent (its default 5 s interval) in this process, the
control plane in uvicorn, the page in headless Chromium."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry
from breakers.agent import Agent
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Circuit, Service
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

FAILED = re.compile(r"([1-9]\d*(?:\.\d+)?|0\.\d*[1-9]\d*)% failed")


class Down(Exception):
    pass


def fail() -> None:
    raise Down


def test_a_burst_of_failures_shows_within_10_s(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User
) -> None:
    service = Service.objects.create(name="shop")
    token = create_agent_token(service)[1]
    registry = CircuitBreakerRegistry()
    # Thresholds the burst does not reach: the failures are counted, the circuit stays
    # closed (what is shown is traffic, not a trip).
    payments = registry.get_or_create(
        "payments",
        CircuitBreakerConfig(failure_threshold=1000, sliding_window_size=1000, minimum_calls=1000),
    )
    agent = Agent(own_control_plane.url, token, "shop", registry=registry)  # interval 5 s
    with agent:
        for _ in range(20):
            payments.call(lambda: "ok")
        assert wait_for(lambda: Circuit.objects.filter(name="payments").exists(), timeout=10)
        circuit = Circuit.objects.get(name="payments")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        login(page, own_control_plane.url, viewer.username, f"{viewer.username}-pw-123!")
        page.goto(f"{own_control_plane.url}/circuits/{circuit.pk}/?range=15m")
        summary = page.locator('[data-field="traffic-summary"]')
        page.wait_for_function(
            "() => document.querySelector('[data-live]')?.getAttribute('data-live') === 'on'",
            timeout=10_000,
        )
        assert wait_for(lambda: "calls/s" in (summary.text_content() or ""), timeout=15)
        assert not FAILED.search(summary.text_content() or "")

        burst = time.monotonic()
        for _ in range(50):
            with contextlib.suppress(Down):
                payments.call(fail)
        # No reload: the page hears of the new traffic over its socket and fetches it.
        assert wait_for(lambda: FAILED.search(summary.text_content() or ""), timeout=10), (
            summary.text_content()
        )
        seen_after = time.monotonic() - burst
        page.screenshot(path=str(screenshot_dir() / "traffic-05-burst.png"), full_page=True)
        print(f"\nburst of failures on the open page after {seen_after:.1f} s")
        assert seen_after <= 10.0

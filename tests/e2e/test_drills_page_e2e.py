"""The circuit page's drills in Chromium: an operator starts a drill with the form (CSRF),
the running drill counts down while its agent holds the breaker open, and once it ends
the page reloads itself and shows the outcome; a viewer sees the drills, not the form.
Screenshots go to artifacts/screenshots/drills-*.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from breakers import CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.drills import settle_outcomes
from controlplane.circuits.models import Circuit, Drill, Service
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess, change_feed_listeners, wait_for

pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

NAMES = ["web-1", "web-2", "web-3", "web-4"]


def _work(fail: bool) -> Any:
    def call() -> str:
        if fail:
            raise RuntimeError("provider down")
        return "ok"

    return call


def test_an_operator_runs_a_drill_from_the_circuit_page(
    control_plane: ControlPlaneProcess, browser: Any, operator: User, viewer: User
) -> None:
    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]
    registries = {name: CircuitBreakerRegistry() for name in NAMES}
    breakers = {name: r.get_or_create("payments") for name, r in registries.items()}
    agents = [
        Agent(control_plane.url, token, "checkout", registry=registries[n], instance_id=n,
              backoff_initial=0.1, backoff_max=0.5, request_timeout=2.0)
        for n in NAMES
    ]  # fmt: skip
    for agent in agents:
        agent.start()
    shots = screenshot_dir()
    violations: list[str] = []
    try:
        assert wait_for(lambda: all(a.stats()["syncs_ok"] >= 1 for a in agents), timeout=10)
        assert wait_for(lambda: change_feed_listeners() >= 1, timeout=10.0)
        circuit = Circuit.objects.get(name="payments")
        context = browser.new_context(viewport={"width": 1280, "height": 1400})
        page = context.new_page()
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        login(page, control_plane.url, "otto", "otto-pw-123!")
        page.goto(f"{control_plane.url}/circuits/{circuit.pk}/#drills")
        page.wait_for_selector("form.drill-form")
        assert page.locator(".drill-pick input[type=checkbox]").count() == len(NAMES)
        # A bad duration is refused beside its field, nothing started.
        page.fill("form.drill-form input[name=share]", "50")
        page.fill("form.drill-form input[name=reason]", "game day: does checkout degrade?")
        page.evaluate("document.querySelector('form.drill-form input[name=duration]').max = ''")
        page.fill("form.drill-form input[name=duration]", "999999")
        page.click("form.drill-form button[type=submit]")
        page.wait_for_selector("[data-error-for=duration]")
        assert not Drill.objects.exists()
        page.locator("#drills").screenshot(path=str(shots / "drills-form-error.png"))

        page.fill("form.drill-form input[name=duration]", "8")
        page.click("form.drill-form button[type=submit]")
        page.wait_for_selector(".drill-running")
        drill = Drill.objects.get()
        assert len(drill.instances) == 2 and drill.created_by == operator
        assert wait_for(
            lambda: all(breakers[n].state is CircuitState.FORCED_OPEN for n in drill.instances),
            timeout=2.0,
        )
        assert all(
            breakers[n].state is CircuitState.CLOSED for n in NAMES if n not in drill.instances
        )
        page.wait_for_function(
            "() => /\\d+ s left/.test(document.querySelector('[data-drill-countdown]').textContent)"
        )
        text = page.inner_text(".drill-running")
        assert "forced open on 2 of 4 live instances (50% asked)" in text, text
        assert re.search(r"\d+ s left", text), text
        # The application's traffic meanwhile: the drilled instances answer from their
        # fallback, the others call through (one in five fails).
        for i in range(20):
            for name in NAMES:
                breakers[name].call(_work(i % 5 == 0), fallback=lambda: "cached")
        for agent in agents:
            assert agent.flush(timeout=5.0)
        page.screenshot(path=str(shots / "drills-running.png"), full_page=False)
        page.locator("#drills").screenshot(path=str(shots / "drills-running-section.png"))

        # At its end the agents release it, the server ends it, the page reloads itself.
        page.wait_for_selector("table.drills-done tr[data-drill]", timeout=20_000)
        assert all(breakers[n].state is CircuitState.CLOSED for n in NAMES)
        row = page.inner_text(f"table.drills-done tr[data-drill='{drill.pk}']")
        assert "ran to its end" in row and "2 of 4" in row, row
        for name in drill.instances:
            assert name in row
        # Once its reports are in, the outcome counts them (the beat task's work).
        settle_outcomes()
        page.reload()
        row = page.inner_text(f"table.drills-done tr[data-drill='{drill.pk}']")
        assert "40 (0)" in row and "40 (50.0% of requests)" in row, row
        assert "20.0% (-)" in row, row  # 8 of the 40 calls that ran failed
        page.locator("#drills").screenshot(path=str(shots / "drills-finished.png"))

        # A viewer reads the drills but gets no form.
        viewer_page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        login(viewer_page, control_plane.url, "vera", "vera-pw-123!")
        viewer_page.goto(f"{control_plane.url}/circuits/{circuit.pk}/#drills")
        viewer_page.wait_for_selector("table.drills-done")
        assert viewer_page.locator("form.drill-form").count() == 0
        assert violations == []
    finally:
        for agent in agents:
            agent.stop()

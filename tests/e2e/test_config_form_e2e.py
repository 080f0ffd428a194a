"""The config form end to end, by keyboard alone: a real uvicorn server (PostgreSQL,
Redis) and headless Chromium. The operator tabs to the fields, types, sees an error
beside its field, fixes it, submits with Enter, reads the diff and the estimate on the
confirmation, saves with the keyboard and sees the new version. Screenshots go to
artifacts/screenshots/ (config-*.png)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.circuits.models import Circuit, ConfigVersion, Service, Traffic10s
from controlplane.circuits.operations import create_config_version
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

MAX_TABS = 300  # Tab presses to reach a control before giving up


def focused(page: Any) -> str:
    """The focused element as ``id`` or ``tag:text``."""
    return str(
        page.evaluate(
            "() => { const e = document.activeElement;"
            " return e ? (e.id || e.tagName.toLowerCase() + ':' + e.textContent.trim()) : ''; }"
        )
    )


def tab_to(page: Any, target: str) -> None:
    """Press Tab until ``target`` (an id, or ``tag:text``) has the focus."""
    for _ in range(MAX_TABS):
        if focused(page) == target:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{target} not reached with {MAX_TABS} Tab presses (at {focused(page)})")


def retype(page: Any, text: str) -> None:
    """Replace the focused input's value by typing."""
    page.keyboard.press("Control+a")
    page.keyboard.type(text)


def shot(target: Any, name: str) -> None:
    kwargs = {"full_page": True} if hasattr(target, "goto") else {}
    target.screenshot(path=str(screenshot_dir() / f"{name}.png"), **kwargs)


def outage(circuit: Circuit) -> None:
    """Ten minutes ago: 10 healthy buckets, 6 failing whole, 20 healthy (10 calls each)."""
    start = math.floor(timezone.now().timestamp() / 10) * 10 - 600
    for i, failures in enumerate([0] * 10 + [10] * 6 + [0] * 20):
        Traffic10s.objects.create(
            circuit=circuit,
            bucket=datetime.fromtimestamp(start + 10 * i, UTC),
            calls=10,
            successes=10 - failures,
            failures=failures,
        )


def test_an_operator_edits_reviews_and_saves_a_config_with_the_keyboard_alone(
    own_control_plane: ControlPlaneProcess, browser: Any, operator: User
) -> None:
    service = Service.objects.create(name="checkout")
    circuit = Circuit.objects.create(service=service, name="payments")
    create_config_version(circuit, {}, expected_version=0, user=None, reason="defaults")
    outage(circuit)
    base = own_control_plane.url
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        login(page, base, "otto", "otto-pw-123!")
        page.goto(f"{base}/circuits/{circuit.pk}/")

        # A value out of range: the server's error sits beside the field.
        tab_to(page, "cfg-failure_threshold")
        retype(page, "0")
        page.keyboard.press("Enter")
        page.wait_for_selector('[data-error-for="failure_threshold"]', timeout=10_000)
        error_input = page.locator("#cfg-failure_threshold")
        assert error_input.get_attribute("aria-invalid") == "true"
        assert "cfg-failure_threshold-error" in (
            error_input.get_attribute("aria-describedby") or ""
        )
        assert "must be an integer between 1 and 1000000" in page.inner_text(
            "#cfg-failure_threshold-error"
        )
        # The keyboard is on the field to fix (autofocus).
        page.wait_for_function(
            "() => document.activeElement.id === 'cfg-failure_threshold'", timeout=5_000
        )
        shot(page.locator("#config"), "config-01-inline-error")

        # Fix it, change the open timeout and the window type, give a reason, Enter.
        tab_to(page, "cfg-failure_threshold")
        retype(page, "8")
        tab_to(page, "cfg-timeout")
        retype(page, "5")
        tab_to(page, "cfg-window_type")
        page.keyboard.press("ArrowDown")  # count -> time
        assert page.eval_on_selector("#cfg-window_type", "e => e.value") == "time"
        tab_to(page, "cfg-reason")
        page.keyboard.type("faster recovery")
        shot(page.locator("#config"), "config-02-edited")
        page.keyboard.press("Enter")

        # The confirmation: the diff and the estimate; nothing saved yet.
        page.wait_for_selector("h1#confirm-title", timeout=10_000)
        assert page.inner_text("h1") == "Save checkout/payments config as v2?"
        rows = page.eval_on_selector_all(
            "tr[data-config-field]", "rs => rs.map(r => r.dataset.configField)"
        )
        assert rows == ["failure_threshold", "timeout", "window_type"]
        diff = page.inner_text("table.config-diff")
        assert "5 failures" in diff and "8 failures" in diff
        assert "30 seconds" in diff and "5 seconds" in diff
        estimate = page.inner_text("[data-estimate]")
        assert re.fullmatch(
            r"With these thresholds the circuit would have opened \d+ times? in the last hour "
            r"\(current: 2\)\.",
            estimate,
        ), estimate
        assert ConfigVersion.objects.filter(circuit=circuit).count() == 1
        shot(page, "config-03-confirm")

        # Save with the keyboard: Tab to the button, Space.
        tab_to(page, "button:Save as v2")
        page.keyboard.press("Space")
        page.wait_for_url(f"{base}/circuits/{circuit.pk}/#config", timeout=10_000)
        assert page.inner_text("#config-title") == "Config v2"
        assert page.eval_on_selector("#cfg-failure_threshold", "e => e.value") == "8"
        new = ConfigVersion.objects.get(circuit=circuit, version=2)
        assert (new.config["failure_threshold"], new.config["timeout"]) == (8, 5.0)
        assert new.config["window_type"] == "time" and new.reason == "faster recovery"
        assert new.created_by is not None and new.created_by.username == "otto"
        shot(page.locator("#config"), "config-04-saved")

        # A phone's width: label above input, nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        width = page.evaluate(
            "() => { const s = document.querySelector('#config');"
            " let w = s.getBoundingClientRect().right;"
            " s.querySelectorAll('*').forEach(e => {"
            " w = Math.max(w, e.getBoundingClientRect().right); });"
            " return w; }"
        )
        assert width <= 390, width
        label = page.locator('label[for="cfg-timeout"]').bounding_box()
        control = page.locator("#cfg-timeout").bounding_box()
        assert label is not None and control is not None and control["y"] > label["y"]
        shot(page.locator("#config"), "config-05-phone")
    finally:
        page.close()

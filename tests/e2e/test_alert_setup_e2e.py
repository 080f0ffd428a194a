"""Alert rules and channels, and config versions compared, end to end: a real uvicorn
server (PostgreSQL, Redis) and headless Debian Chromium under the enforced CSP.

An admin creates a webhook channel, clicks "Send test" and the real receiver on
127.0.0.1 gets the signed test notification while the page shows its answer; creates a
rule (the kind's parameters shown by the page's script), sees the API's error beside a
bad value, fixes it, edits the rule, and deletes both after their confirmation pages.
Then the circuit page's version history picks two versions and the diff page shows
what changed. No CSP violation, no console error, no axe violation on these pages.
Screenshots go to artifacts/screenshots/alert-setup-*.png and config-diff-*.png."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User

from controlplane.alerts.models import AlertRule, Channel
from controlplane.circuits.models import AuditEvent, Circuit, Service
from controlplane.circuits.operations import create_config_version
from tests.alerts.alert_helpers import WEBHOOK_SECRET, Receiver
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess, wait_for
from tests.e2e.test_a11y_e2e import axe, describe, horizontal_overflow
from tests.e2e.test_csp_e2e import Watched

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"), full_page=True)


def clean(watched: Watched, page: Any, label: str) -> None:
    """No CSP violation, console error or axe violation on the page now."""
    assert watched.violations(page) == [], label
    assert watched.errors() == [], (label, watched.errors())
    violations = axe(page)
    assert not violations, f"{label}:\n{describe(violations)}"


def visible_kinds(page: Any) -> list[str]:
    """The kinds whose fieldset shows, once the page's script has hidden the others."""
    page.wait_for_function(
        "() => document.querySelectorAll('[data-kind-params][hidden]').length > 0",
        timeout=10_000,
    )
    return list(
        page.eval_on_selector_all(
            "[data-kind-params]", "fs => fs.filter(f => !f.hidden).map(f => f.dataset.kindParams)"
        )
    )


def test_an_admin_creates_tests_edits_and_deletes_a_channel_and_a_rule(
    own_control_plane: ControlPlaneProcess, browser: Any, admin: User, receiver: Receiver
) -> None:
    base = own_control_plane.url
    watched = Watched(browser, width=1280)
    page = watched.context.new_page()
    try:
        login(page, base, "ada", "ada-pw-123!")
        page.goto(f"{base}/alerts/")
        page.click("text=Alert rules and notification channels")
        page.wait_for_url(f"{base}/alerts/rules/")

        # A webhook channel to the receiver.
        page.click("text=New channel")
        assert visible_kinds(page) == ["webhook"]
        page.select_option("#channel-kind", "email")
        assert visible_kinds(page) == ["email"]
        page.select_option("#channel-kind", "webhook")
        page.fill("#channel-name", "oncall-hook")
        page.fill("#webhook_url", receiver.url)
        page.fill("#webhook_secret", WEBHOOK_SECRET)
        clean(watched, page, "channel form")
        shot(page, "alert-setup-01-channel-form")
        page.click("button:has-text('Create channel')")
        page.wait_for_url(f"{base}/alerts/rules/#channels")
        row = page.locator('tr[data-channel="oncall-hook"]')
        assert "127.0.0.1" in row.inner_text() and WEBHOOK_SECRET not in page.content()

        # Send test: the real receiver gets it, the page shows its answer.
        row.locator("button:has-text('Send test')").click()
        page.wait_for_selector('.test-result[data-test-ok="yes"]', timeout=10_000)
        assert "HTTP 200 from the webhook" in page.inner_text(".test-result")
        assert wait_for(lambda: len(receiver.requests) == 1, timeout=5)
        [(headers, raw)] = receiver.requests
        signature = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["X-Switchyard-Signature"] == f"sha256={signature}"
        assert receiver.bodies()[0]["event"] == "test"
        clean(watched, page, "list after a test")
        shot(page, "alert-setup-02-test-sent")

        # A rule: the kind chooses the parameters shown; a bad value gets the API's error.
        page.click("text=New rule")
        assert visible_kinds(page) == ["open_too_long"]
        page.fill("#rule-name", "payments failing")
        page.select_option("#rule-kind", "failure_rate")
        assert visible_kinds(page) == ["failure_rate"]
        page.fill("#param_failure_rate_threshold", "1.5")
        page.fill("#param_failure_rate_for", "30")
        page.check("text=oncall-hook")
        page.click("button:has-text('Create rule')")
        page.wait_for_selector('[data-error-for="param_failure_rate_threshold"]', timeout=10_000)
        assert page.inner_text('[data-error-for="param_failure_rate_threshold"]') == (
            "params.threshold: must be at most 1.0"
        )
        assert visible_kinds(page) == ["failure_rate"]
        assert page.get_attribute("#param_failure_rate_threshold", "aria-invalid") == "true"
        assert not AlertRule.objects.exists()
        clean(watched, page, "rule form with an error")
        shot(page, "alert-setup-03-rule-error")
        # A phone's width: nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        assert not horizontal_overflow(page)
        shot(page, "alert-setup-03-rule-error-phone")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.fill("#param_failure_rate_threshold", "0.4")
        page.click("button:has-text('Create rule')")
        page.wait_for_url(f"{base}/alerts/rules/#rules")
        rule = AlertRule.objects.get(name="payments failing")
        assert rule.params == {"threshold": 0.4, "for": 30}
        assert [c.name for c in rule.channels.all()] == ["oncall-hook"]

        # Edit it.
        page.locator('tr[data-rule="payments failing"] a:has-text("Edit")').click()
        page.wait_for_selector("#rule-severity")
        assert page.input_value("#param_failure_rate_threshold") == "0.4"
        page.select_option("#rule-severity", "critical")
        page.fill("#param_failure_rate_for", "120")
        page.click("button:has-text('Save rule')")
        page.wait_for_url(f"{base}/alerts/rules/#rules")
        row = page.locator('tr[data-rule="payments failing"]')
        assert "critical" in row.inner_text() and "120" in row.inner_text()
        clean(watched, page, "list")
        shot(page, "alert-setup-04-list")

        # Delete the rule, then the channel, each after its confirmation page.
        row.locator('a:has-text("Delete")').click()
        page.wait_for_selector("h1#confirm-title")
        assert page.inner_text("h1") == "Delete alert rule payments failing?"
        clean(watched, page, "delete confirmation")
        shot(page, "alert-setup-05-delete-confirm")
        page.click("button:has-text('Delete alert rule')")
        page.wait_for_url(f"{base}/alerts/rules/#rules")
        assert page.locator('tr[data-rule="payments failing"]').count() == 0
        page.locator('tr[data-channel="oncall-hook"] a:has-text("Delete")').click()
        page.wait_for_selector("h1#confirm-title")
        assert "No rule uses it." in page.inner_text("main")
        page.click("button:has-text('Delete channel')")
        page.wait_for_url(f"{base}/alerts/rules/#channels")
        assert page.locator('tr[data-channel="oncall-hook"]').count() == 0
        shot(page, "alert-setup-06-empty")
        assert not AlertRule.objects.exists() and not Channel.objects.exists()
        actions = list(
            AuditEvent.objects.filter(actor_name="ada")
            .order_by("id")
            .values_list("action", flat=True)
        )
        assert actions == [
            "channel.create",
            "channel.test",
            "alert_rule.create",
            "alert_rule.update",
            "alert_rule.delete",
            "channel.delete",
        ]
    finally:
        watched.close()


def test_the_version_history_picks_two_versions_and_the_diff_page_shows_the_changes(
    own_control_plane: ControlPlaneProcess, browser: Any, operator: User
) -> None:
    service = Service.objects.create(name="checkout")
    circuit = Circuit.objects.create(service=service, name="payments")
    create_config_version(circuit, {}, expected_version=0, user=None, reason="registered")
    create_config_version(
        circuit, {"failure_threshold": 3}, expected_version=1, user=operator, reason="noisy"
    )
    create_config_version(
        circuit, {"timeout": 45.0}, expected_version=2, user=operator, reason="slow recovery"
    )
    base = own_control_plane.url
    watched = Watched(browser, width=1280)
    page = watched.context.new_page()
    try:
        login(page, base, "otto", "otto-pw-123!")
        page.goto(f"{base}/circuits/{circuit.pk}/#versions")
        history = page.locator("#versions")
        assert history.locator("tbody tr").count() == 3
        history.locator("#diff-from-1").check()
        history.locator("#diff-to-3").check()
        history.screenshot(path=str(screenshot_dir() / "config-diff-01-history.png"))
        history.locator("button:has-text('Compare')").click()
        page.wait_for_selector("table.config-diff", timeout=10_000)
        url = urlsplit(page.url)
        assert url.path == f"/circuits/{circuit.pk}/config/diff"
        assert parse_qs(url.query) == {"from": ["1"], "to": ["3"]}
        assert page.inner_text("h1") == "checkout/payments: v1 → v3"
        fields = page.eval_on_selector_all(
            "tr[data-config-field]", "rs => rs.map(r => r.dataset.configField)"
        )
        assert fields == ["failure_threshold", "timeout"]
        table = page.inner_text("table.config-diff")
        assert "5 failures" in table and "3 failures" in table
        assert "30 seconds" in table and "45 seconds" in table
        meta = page.inner_text("table.version-meta")
        assert "registered" in meta and "slow recovery" in meta and "otto" in meta
        clean(watched, page, "diff page")
        shot(page, "config-diff-02-page")

        # Another pair from the pickers; a version the circuit does not have is a 400.
        page.select_option('select[name="from"]', "3")
        page.select_option('select[name="to"]', "2")
        page.click("button:has-text('Compare')")
        page.wait_for_url(f"{base}/circuits/{circuit.pk}/config/diff?from=3&to=2")
        assert page.eval_on_selector_all(
            "tr[data-config-field]", "rs => rs.map(r => r.dataset.configField)"
        ) == ["timeout"]
        page.goto(f"{base}/circuits/{circuit.pk}/config/diff?from=1&to=9")
        assert page.inner_text('[data-error-for="to"]') == "to: this circuit has no version 9"
        shot(page, "config-diff-03-bad-version")
    finally:
        watched.close()

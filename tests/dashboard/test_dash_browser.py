"""End to end in headless Chromium: a real uvicorn server (Redis channel layer,
PostgreSQL), a real application process running breakers and the agent, and the
dashboard as operators and viewers see it. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Circuit, Override, Service, Team
from controlplane.circuits.operations import force_circuit
from tests.dashboard.browser import CHROMIUM, AppProcess, launch, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess, server_env, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]


@pytest.fixture
def server(transactional_db: None) -> Iterator[ControlPlaneProcess]:
    plane = ControlPlaneProcess(server_env())
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the
    # test itself are plain sync code (Django documents this switch for Playwright).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_api.sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


@pytest.fixture
def app(server: ControlPlaneProcess) -> Iterator[AppProcess]:
    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]
    process = AppProcess(server.url, token, "checkout", ["payments", "inventory"])
    yield process
    process.stop()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"), full_page=True)


def test_operator_watches_a_trip_live_and_forces_the_circuit_closed(
    server: ControlPlaneProcess, browser: Any, app: AppProcess, operator: User, viewer: User
) -> None:
    assert wait_for(lambda: Circuit.objects.filter(name="payments").exists(), timeout=10)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, server.url, "otto", "otto-pw-123!")
    tile = page.locator('[data-circuit="checkout/payments"]')
    assert tile.get_attribute("data-state") == "closed"
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    page.evaluate("window.__sameDocument = true")
    shot(page, "01-overview-closed")

    assert app.command("trip payments") == "ok open"
    page.wait_for_selector('[data-circuit="checkout/payments"][data-state="open"]', timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
    assert "open on 1 of 1" in tile.inner_text()
    assert tile.locator('[data-field="label"]').inner_text() == "open"
    shot(page, "02-overview-open-live")

    tile.click()
    page.wait_for_url(f"{server.url}/circuits/*/")
    page.fill('.override-form input[name="reason"]', "failover to the standby")
    page.click('button[value="forced_closed"]')
    page.wait_for_selector("text=Confirm: Force closed")
    shot(page, "03-confirm-force-closed")
    page.click("text=Confirm: Force closed")
    page.wait_for_selector('.circuit-head [data-state="forced_closed"]', timeout=10_000)
    assert Override.objects.get().created_by == operator
    # The application's own breaker obeys (the agent's watch wakes on the commit).
    assert wait_for(lambda: app.state("payments") == "forced_closed", timeout=10)
    # ...and reports it: the header tile turns "applied on 1 of 1" live.
    page.wait_for_selector(".circuit-head >> text=applied on 1 of 1", timeout=10_000)
    page.reload()
    page.wait_for_selector('tr[data-instance] [data-state="forced_closed"]')
    page.wait_for_selector("text=failover to the standby")
    shot(page, "04-circuit-forced-closed")
    stats = json.loads(app.command("stats"))
    assert stats["syncs_ok"] >= 1

    viewer_page = browser.new_context().new_page()
    login(viewer_page, server.url, "vera", "vera-pw-123!")
    viewer_page.click('[data-circuit="checkout/payments"]')
    viewer_page.wait_for_url(f"{server.url}/circuits/*/")
    for label in ("Force open", "Force closed", "Release", "Save as"):
        assert viewer_page.locator(f"button:has-text('{label}')").count() == 0, label
    assert viewer_page.locator("form.override-form").count() == 0
    shot(viewer_page, "05-viewer-circuit-no-controls")


def test_screenshot_dir_is_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_SCREENSHOTS", str(tmp_path / "shots"))
    assert screenshot_dir() == tmp_path / "shots" and (tmp_path / "shots").is_dir()
    assert os.environ["SWITCHYARD_SCREENSHOTS"].endswith("shots")


def test_a_dropped_socket_reconnects_and_resynchronises(
    server: ControlPlaneProcess, browser: Any, app: AppProcess, operator: User
) -> None:
    assert wait_for(lambda: Circuit.objects.filter(name="inventory").exists(), timeout=10)
    app.stop()  # no agent sync after the restart: only the resync can show the change
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, server.url, "otto", "otto-pw-123!")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    page.evaluate("window.__sameDocument = true")
    server.stop()
    page.wait_for_selector('#live-status[data-live="off"]', timeout=10_000)
    # Changed while the browser is away: the live event goes to no one.
    force_circuit(Circuit.objects.get(name="inventory"), "forced_open", reason="x", user=operator)
    shot(page, "06-overview-reconnecting")
    server.start()
    page.wait_for_selector(
        '[data-circuit="checkout/inventory"][data-state="forced_open"]', timeout=30_000
    )
    live = page.evaluate("window.switchyardLive")
    assert live["connects"] >= 2 and live["resyncs"] >= 2, live
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "07-overview-resynchronised")


def test_an_alert_fires_live_an_operator_acknowledges_and_silences_it(
    server: ControlPlaneProcess, browser: Any, app: AppProcess, operator: User, viewer: User
) -> None:
    from controlplane.alerts.evaluate import evaluate
    from controlplane.alerts.models import Alert, AlertRule, Silence
    from controlplane.circuits.models import AuditEvent, Snapshot

    assert wait_for(lambda: Circuit.objects.filter(name="payments").exists(), timeout=10)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, server.url, "otto", "otto-pw-123!")
    page.goto(f"{server.url}/alerts/")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    assert page.inner_text("#alerts-badge") == "0 firing"
    page.evaluate("window.__sameDocument = true")

    assert app.command("trip payments") == "ok open"
    assert wait_for(
        lambda: Snapshot.objects.filter(circuit__name="payments", state="open").exists(),
        timeout=10,
    )
    rule = AlertRule.objects.create(
        name="payments open too long",
        kind="open_too_long",
        params={"duration": 1},
        severity="critical",
    )
    # The alerts app's own evaluation (what the beat runs), until the episode is 1 s old.
    assert wait_for(lambda: evaluate().fired == 1, timeout=10, interval=0.2)
    alert = Alert.objects.get(rule=rule)
    row = page.locator(f'tr[data-alert-id="{alert.pk}"]')
    page.wait_for_selector(f'tr[data-alert-id="{alert.pk}"][data-status="firing"]', timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True  # arrived live, no reload
    page.wait_for_selector('#alerts-badge[data-count="1"]', timeout=10_000)
    assert "checkout/payments" in row.inner_text() and "critical" in row.inner_text()
    shot(page, "08-alerts-firing-live")

    row.locator("button:has-text('Acknowledge')").click()
    page.wait_for_selector(f'tr[data-alert-id="{alert.pk}"] >> text=by otto at', timeout=10_000)
    alert.refresh_from_db()
    assert alert.acknowledged_by == operator
    assert AuditEvent.objects.filter(action="alert.acknowledge", actor=operator).count() == 1
    shot(page, "09-alerts-acknowledged")

    page.locator(f'tr[data-alert-id="{alert.pk}"] a:has-text("Silence")').click()
    page.check('input[name="match"][value="service"]')
    page.fill('input[name="reason"]', "payments provider maintenance")
    page.fill('input[name="expires_in_minutes"]', "45")
    page.click("button:has-text('Silence…')")
    page.wait_for_selector("text=Confirm: silence service checkout")
    shot(page, "10-confirm-silence")
    page.click("text=Confirm: silence service checkout")
    page.wait_for_selector("tr[data-silence] >> text=payments provider maintenance")
    silence = Silence.objects.get()
    assert (silence.service_id, silence.created_by) == (alert.circuit.service_id, operator)
    assert page.locator(f'tr[data-alert-id="{alert.pk}"] >> text=silenced').count() == 1
    shot(page, "11-alerts-silenced")

    page.goto(f"{server.url}/circuits/{alert.circuit_id}/")
    page.wait_for_selector(f'.circuit-alerts tr[data-alert-id="{alert.pk}"]')
    shot(page, "12-circuit-open-alert")

    viewer_page = browser.new_context().new_page()
    login(viewer_page, server.url, "vera", "vera-pw-123!")
    viewer_page.goto(f"{server.url}/alerts/")
    viewer_page.wait_for_selector(f'tr[data-alert-id="{alert.pk}"] >> text=by otto at')
    for label in ("Acknowledge", "Silence", "End silence"):
        assert viewer_page.locator(f"button:has-text('{label}')").count() == 0, label
    assert viewer_page.locator("a.button").count() == 0
    assert viewer_page.locator("main form[method=post]").count() == 0
    shot(viewer_page, "13-viewer-alerts-no-controls")


def test_the_alerts_page_resynchronises_after_a_dropped_socket(
    server: ControlPlaneProcess, browser: Any, app: AppProcess, operator: User
) -> None:
    from controlplane.alerts.evaluate import evaluate
    from controlplane.alerts.models import Alert, AlertRule

    assert wait_for(lambda: Circuit.objects.filter(name="inventory").exists(), timeout=10)
    app.stop()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, server.url, "otto", "otto-pw-123!")
    page.goto(f"{server.url}/alerts/?status=firing")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    page.evaluate("window.__sameDocument = true")
    server.stop()
    page.wait_for_selector('#live-status[data-live="off"]', timeout=10_000)
    # Fired while the browser is away: the live event goes to no one.
    force_circuit(Circuit.objects.get(name="inventory"), "forced_open", reason="x", user=operator)
    AlertRule.objects.create(
        name="inventory open", kind="open_too_long", params={"duration": 1}, severity="warning"
    )
    assert wait_for(lambda: evaluate().fired == 1, timeout=10, interval=0.2)
    alert = Alert.objects.get()
    server.start()
    page.wait_for_selector(f'tr[data-alert-id="{alert.pk}"][data-status="firing"]', timeout=30_000)
    page.wait_for_selector('#alerts-badge[data-count="1"]', timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator(f'tr[data-alert-id="{alert.pk}"] .tag').inner_text() == "forced"
    live = page.evaluate("window.switchyardLive")
    assert live["connects"] >= 2 and live["alertRefreshes"] >= 2, live
    shot(page, "14-alerts-resynchronised")


def _tile_html(page: Any, key: str) -> str:
    return str(page.locator(f'[data-circuit="{key}"]').evaluate("el => el.outerHTML"))


def test_a_live_update_renders_the_tile_as_the_page_does(
    server: ControlPlaneProcess, browser: Any, operator: User
) -> None:
    """The same data shows the same tile, whether first rendered by the page or placed
    by live.js from a socket update (every string comes from the server's formatter)."""
    from datetime import timedelta

    from django.utils import timezone

    from controlplane.circuits.events import send_to_fleet_group, snapshots_event
    from controlplane.circuits.models import Instance, Snapshot

    now = timezone.now()
    service = Service.objects.create(name="checkout")
    circuit = Circuit.objects.create(service=service, name="payments")
    instance = Instance.objects.create(
        service=service, instance_id="web-1", first_seen=now, last_seen=now
    )
    # Times far enough back that the rendered durations ("2 h 0 min") hold for the test.
    snapshot = Snapshot.objects.create(
        instance=instance,
        circuit=circuit,
        state="closed",
        calls_delta=50,
        delta_seconds=5.0,
        failure_rate=0.1,
        state_since=now - timedelta(hours=2),
        updated_at=now - timedelta(hours=2),
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, server.url, "otto", "otto-pw-123!")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    page.evaluate("window.__sameDocument = true")
    first = _tile_html(page, "checkout/payments")
    assert 'data-state="closed"' in first and ">10.0/s<" in first

    Snapshot.objects.filter(pk=snapshot.pk).update(
        state="open", calls_delta=120, rejected_delta=33, delta_seconds=4.0, failure_rate=0.625
    )
    Instance.objects.filter(pk=instance.pk).update(last_seen=timezone.now())
    item = {
        "circuit_id": circuit.pk,
        "circuit": "payments",
        "state": "open",
        "previous_state": "closed",
        "config_version": 0,
    }
    send_to_fleet_group(
        snapshots_event(
            service_id=service.pk, service="checkout", instance="web-1", snapshots=[item]
        )  # type: ignore[list-item]
    )
    page.wait_for_selector('[data-circuit="checkout/payments"][data-state="open"]', timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True  # placed live, no reload
    live = _tile_html(page, "checkout/payments")

    Instance.objects.filter(pk=instance.pk).update(last_seen=timezone.now())
    page.reload()
    rendered = _tile_html(page, "checkout/payments")
    assert live == rendered
    for text in (">open<", ">open on 1 of 1<", ">62.5%<", ">30.0/s<", ">8.2/s<", ">2 h 0 min<"):
        assert text in rendered, text


def test_a_user_creates_uses_and_revokes_an_api_token_on_its_page(
    server: ControlPlaneProcess, browser: Any, operator: User
) -> None:
    from controlplane.circuits.models import APIToken

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, server.url, "otto", "otto-pw-123!")
    page.click('header nav a:has-text("API tokens")')
    page.wait_for_url(f"{server.url}/tokens/")
    assert page.locator("tbody").inner_text().strip() == "No token yet."
    # Beyond the user's rights: the form answers naming the field.
    page.select_option('select[name="scope"]', "admin")
    page.click('button:has-text("Create token")')
    error = page.locator('[data-error-for="scope"]')
    assert "more than your rights" in error.inner_text()
    page.select_option('select[name="scope"]', "operate")
    page.fill('input[name="expires_in_days"]', "7")
    page.fill('input[name="label"]', "deploy script")
    page.click('button:has-text("Create token")')
    secret = page.locator("#token-secret").input_value()
    assert secret.startswith("syu_")
    shot(page, "tokens-created")
    token = APIToken.objects.get()
    assert token.scope == "operate" and token.user == operator
    # The secret works once copied; the list then shows its last use.
    assert server.request("GET", "/api/v1/circuits/", token=secret)[0] == 200
    page.goto(f"{server.url}/tokens/")
    row = page.locator(f'tr[data-token="{token.prefix}"]')
    used = row.locator("[data-last-used]").get_attribute("data-last-used")
    last_used = APIToken.objects.get().last_used_at
    assert last_used is not None and used == last_used.isoformat()
    assert secret not in page.content()
    assert "deploy script" in row.inner_text() and "operate" in row.inner_text()
    shot(page, "tokens-list")
    row.locator('button:has-text("Revoke")').click()
    page.wait_for_url(f"{server.url}/tokens/")
    assert "revoked" in page.locator(f'tr[data-token="{token.prefix}"]').inner_text()
    shot(page, "tokens-revoked")
    assert wait_for(lambda: server.request("GET", "/api/v1/circuits/", token=secret)[0] == 401)
    page.close()


def test_a_circuit_that_appears_is_added_live_with_its_team_as_a_reload_shows_it(
    server: ControlPlaneProcess, browser: Any, app: AppProcess, operator: User, sync_body: Any
) -> None:
    """A service of team payments reports its first circuit while the overview is open:
    its section and tile arrive over the socket, headed "team payments" exactly as the
    server renders it after a reload."""
    assert wait_for(lambda: Circuit.objects.filter(name="payments").exists(), timeout=10)
    payments = Team.objects.create(name="payments", slug="payments")
    ledger = Service.objects.create(name="ledger", team=payments)
    token = create_agent_token(ledger)[1]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, server.url, "otto", "otto-pw-123!")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    page.evaluate("window.__sameDocument = true")
    assert page.locator('section[data-service="ledger"]').count() == 0
    body = sync_body(breakers=[{"name": "postings", "state": "open", "failure_rate": 0.7}])
    assert server.request("POST", "/api/v1/agent/sync", body, token=token)[0] == 200
    page.wait_for_selector('[data-circuit="ledger/postings"][data-state="open"]', timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.evaluate("window.switchyardLive.added") >= 1
    section = page.locator('section[data-service="ledger"]')
    live_heading = section.locator("h2").inner_text()
    fields = ".name, [data-field=label], [data-field=summary], [data-field=failure_rate]"
    live_tile = section.locator(f'[data-circuit="ledger/postings"] >> {fields}').all_inner_texts()
    assert live_heading == "ledger team payments"
    assert page.inner_text(".filters .count") == "3 circuits"
    shot(page, "08-overview-circuit-added-live")
    page.reload()
    section = page.locator('section[data-service="ledger"]')
    assert section.locator("h2").inner_text() == live_heading
    reloaded = section.locator(f'[data-circuit="ledger/postings"] >> {fields}').all_inner_texts()
    assert reloaded == live_tile and live_tile[0] == "postings"
    # An overview narrowed by a filter adds nothing (the tile might not match it).
    page.goto(f"{server.url}/?service=checkout")
    assert page.evaluate("document.body.hasAttribute('data-live-add')") is False

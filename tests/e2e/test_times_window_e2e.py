"""Times in the viewer's time zone and the circuit page at an alert's window, end to end:
a real uvicorn server (PostgreSQL, Redis) and headless Chromium set to New York time.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User

from controlplane.alerts.models import Alert, AlertRule
from controlplane.circuits.models import Circuit, Service, Traffic10s
from dashboard import formats
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

ZONE = "America/New_York"
DELTAS = [0, 4.4, 5, 59.4, 60, 61, 3599, 3600, 7199, 86399, 86400, 86400 * 40, -3, -180, -7200]
# Time left (two units, rounded to the nearest): a 7-day token's, a 6.5-day one's.
DELTAS += [-61, -3599, -86399, -(7 * 86400 - 1), -(6 * 86400 + 12 * 3600 + 60)]


def test_an_alert_link_opens_its_window_in_the_viewers_time_zone(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User
) -> None:
    service = Service.objects.create(name="checkout")
    circuit = Circuit.objects.create(service=service, name="payments")
    # An alert that started 3 hours ago and resolved 5 minutes later, with 30 steps of
    # traffic (5 min) from its start: the window is 15 min + 5 min + 15 min, 10 s steps.
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    Traffic10s.objects.bulk_create(
        Traffic10s(
            circuit=circuit,
            bucket=start + timedelta(seconds=10 * i),
            calls=40,
            successes=30,
            failures=10,
            latency={"60": 40},
        )
        for i in range(30)
    )
    rule = AlertRule.objects.create(name="payments failing", kind="failure_rate", params={})
    alert = Alert.objects.create(
        rule=rule,
        circuit=circuit,
        status="resolved",
        started_at=start,
        created_at=start,
        resolved_at=start + timedelta(minutes=5),
    )
    window_from, window_to = alert.window
    assert window_to is not None

    context = browser.new_context(
        timezone_id=ZONE, locale="en-US", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    login(page, own_control_plane.url, "vera", "vera-pw-123!")
    page.goto(f"{own_control_plane.url}{alert.window_url()}")
    page.wait_for_selector('[data-chart="calls"][data-points="30"]', timeout=10_000)

    # The window, not a preset: every 10 s step of the 35 minutes, no button pressed.
    assert int(page.get_attribute('[data-chart="calls"]', "data-steps")) == 35 * 6
    assert page.locator('button[aria-pressed="true"]').count() == 0
    summary = page.inner_text(".traffic-summary")
    assert "4.0 calls/s" in summary and "25.0% failed" in summary, summary

    # Times in New York's zone: the axis, the summary and the window's own bounds.
    local_from = window_from.astimezone(ZoneInfo(ZONE))
    zone_name = local_from.strftime("%Z")  # EST or EDT
    # The legend names the zone of the cursor's time (the axis label is drawn on the canvas).
    legend = '[data-chart="rejected"] .u-legend .u-series:first-child .u-label'
    assert page.inner_text(legend).strip() == zone_name
    last_step = start + timedelta(seconds=290)
    assert last_step.astimezone(ZoneInfo(ZONE)).strftime("%H:%M:%S") + f" {zone_name}" in summary
    bounds = page.locator(".traffic-window time[data-at]").all_inner_texts()
    assert len(bounds) == 2
    assert local_from.strftime("%H:%M:%S") in bounds[0] and zone_name in bounds[0], bounds
    page.screenshot(
        path=str(screenshot_dir() / "times-01-alert-window-new-york.png"), full_page=True
    )

    # The script's words are the server's words, for the same distances in time.
    words = page.evaluate("(ds) => ds.map((d) => window.switchyardTimes.ago(d))", DELTAS)
    assert words == [formats.relative(d) for d in DELTAS]

    # A preset leaves the window: the URL loses it and the latest traffic is drawn.
    page.click('button[data-range="15m"]')
    assert wait_for(lambda: "from=" not in page.url and "range=15m" in page.url)
    page.wait_for_selector(
        '[data-chart="calls"][data-points="0"]', state="attached", timeout=10_000
    )
    assert page.is_hidden(".traffic-window")
    context.close()

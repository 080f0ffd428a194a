"""The circuit page's traffic charts end to end: known traffic posted as real syncs
(telemetry reports, agent token) to a real uvicorn server (PostgreSQL, Redis), read by
traffic.js from the real series API in headless Chromium. Screenshots go to
artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Circuit, Service
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.dashboard.conftest import transition
from tests.e2e.conftest import ControlPlaneProcess

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

CALLS = 50  # per 10 s report: 5.0 calls/s
FAILURES = 5  # 10.0% of the calls
LIVE_CALLS = 100  # the report that arrives while the page is open: 10.0 calls/s


def report(seq: int, bucket: int, calls: int, rejected: int = 0) -> dict[str, Any]:
    """One 10-second telemetry report of breaker "payments" (docs/traffic.md)."""
    failures = calls * FAILURES // CALLS
    return {
        "seq": seq,
        "bucket": bucket,
        "breakers": [
            {
                "name": "payments",
                "calls": calls,
                "successes": calls - failures,
                "failures": failures,
                "slow_calls": 0,
                "rejected": rejected,
                "fallbacks": 0,
                "latency": [[40, calls - 1], [60, 1]],
            }
        ],
    }


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"), full_page=True)


def chart_points(page: Any) -> dict[str, int]:
    return {
        key: int(page.get_attribute(f'[data-chart="{key}"]', "data-points"))
        for key in ("calls", "failure_rate", "latency", "rejected")
    }


def test_traffic_charts_draw_the_posted_traffic_switch_ranges_and_append_live(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User, sync_body: Any
) -> None:
    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]

    def sync(reports: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body = sync_body(
            breakers=[
                {"name": "payments", "calls": 1000, "rejected": 40},
                {"name": "inventory"},  # reports no traffic
            ],
            telemetry=reports,
            dropped_reports=0,
            **extra,
        )
        status, answer = own_control_plane.request("POST", "/api/v1/agent/sync", body, token=token)
        assert status == 200, answer
        return dict(answer)

    # Six complete 10-second buckets ending 20 s ago; the breaker was open (and rejected
    # calls) for 15 s in the middle of them: one band.
    now = int(time.time()) // 10 * 10
    buckets = [now - 70 + 10 * i for i in range(6)]
    rejected = {buckets[2]: 20, buckets[3]: 10}
    reports = [report(i + 1, b, CALLS, rejected.get(b, 0)) for i, b in enumerate(buckets)]
    opened, half_open, closed = buckets[2] + 2, buckets[3] + 7, buckets[3] + 9
    answer = sync(
        reports,
        transitions=[
            transition(1, "closed", "open", iso(opened), 0.6),
            transition(2, "open", "half_open", iso(half_open), 0.6),
            transition(3, "half_open", "closed", iso(closed), 0.1),
        ],
    )
    assert answer["telemetry_through"] == len(reports)
    circuit = Circuit.objects.get(name="payments")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    series_requests: list[str] = []
    page.on("request", lambda r: series_requests.append(r.url) if "/series/" in r.url else None)
    login(page, own_control_plane.url, "vera", "vera-pw-123!")

    # A pasted link opens the range it names.
    page.goto(f"{own_control_plane.url}/circuits/{circuit.pk}/?range=15m")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    page.wait_for_selector('[data-chart="calls"][data-points="6"]', timeout=10_000)
    assert chart_points(page) == {"calls": 6, "failure_rate": 6, "latency": 6, "rejected": 6}
    assert int(page.get_attribute('[data-chart="calls"]', "data-steps")) >= 90
    summary = page.inner_text(".traffic-summary")
    assert "5.0 calls/s" in summary and "10.0% failed" in summary, summary
    assert "p99 " in summary and "p99 -" not in summary, summary
    assert page.get_attribute('button[data-range="15m"]', "aria-pressed") == "true"
    assert page.locator('button[aria-pressed="true"]').count() == 1
    label = page.get_attribute('[data-chart="calls"] .plot', "aria-label")
    assert "last 15 min" in label and "calls/s 5.0/s" in label, label
    assert page.is_hidden(".traffic-empty")
    stats = page.evaluate("window.switchyardTraffic")
    assert stats["bands"] >= 1, stats
    assert page.locator(".traffic-chart canvas").count() == 4
    # One cursor across the four charts: hovering one moves the others' legends.
    page.hover('[data-chart="calls"] .u-over')
    hovered = page.inner_text('[data-chart="rejected"] .u-legend .u-series:first-child .u-value')
    assert hovered.startswith(datetime.now(UTC).strftime("%Y-")), hovered
    page.mouse.move(0, 0)
    shot(page, "traffic-01-15min")

    # 7 d: hour steps, switched in place, kept in the URL.
    page.evaluate("window.__sameDocument = true")
    clicked = time.time()
    page.click('button[data-range="7d"]')
    page.wait_for_function("() => window.switchyardTraffic.range === '7d'")
    page.wait_for_selector('[data-chart="calls"][data-steps]:not([data-steps="0"])')
    assert urlparse(page.url).query == "range=7d"
    assert page.get_attribute('button[data-range="7d"]', "aria-pressed") == "true"
    assert page.get_attribute('button[data-range="15m"]', "aria-pressed") == "false"
    assert page.evaluate("window.__sameDocument") is True
    hours: dict[int, int] = {}
    for b in buckets:
        hours[b // 3600 * 3600] = hours.get(b // 3600 * 3600, 0) + CALLS
    page.wait_for_selector(f'[data-chart="calls"][data-points="{len(hours)}"]', timeout=10_000)
    # The latest hour's calls per second, over the part of it that had passed when the
    # page asked (the API's rule for the step holding "now").
    start = max(hours)
    lowest = hours[start] / min(3600, time.time() - start)
    highest = hours[start] / min(3600, clicked - start)
    summary = page.inner_text(".traffic-summary")
    figure = re.search(r"([0-9]+\.([0-9]+)) calls/s", summary)
    assert figure, summary
    rounding = 0.5 * 10 ** -len(figure.group(2))  # the figure is rounded to its decimals
    assert lowest - rounding <= float(figure.group(1)) <= highest + rounding, summary
    assert "(" + datetime.fromtimestamp(start, UTC).strftime("%H:%M:%S") in summary, summary
    shot(page, "traffic-02-7d")

    # The link of that view opens it again.
    page.reload()
    page.wait_for_function("() => window.switchyardTraffic?.range === '7d'")
    assert page.get_attribute('button[data-range="7d"]', "aria-pressed") == "true"

    # Back to 15 min; a new report arrives and is appended without a reload.
    page.click('button[data-range="15m"]')
    page.wait_for_selector('[data-chart="calls"][data-points="6"]', timeout=10_000)
    page.wait_for_selector('#live-status[data-live="on"]', timeout=10_000)
    page.evaluate("window.__sameDocument = true")
    shown = page.evaluate("window.switchyardTraffic")
    last_shown = shown["lastTime"]  # the start of the last step shown
    before = len(series_requests)
    live_bucket = max(int(time.time()) // 10 * 10 - 10, buckets[-1] + 10)
    sync([report(len(reports) + 1, live_bucket, LIVE_CALLS)])
    page.wait_for_selector('[data-chart="calls"][data-points="7"]', timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    assert f"{LIVE_CALLS / 10:.1f} calls/s" in page.inner_text(".traffic-summary")
    # The socket's "traffic" message named this circuit.
    page.wait_for_function(f"() => window.switchyardTraffic.liveMessages > {shown['liveMessages']}")
    after = page.evaluate("window.switchyardTraffic")
    assert after["appends"] > shown["appends"], after
    # Only the new steps were asked for: from the last ones shown on (30 s back).
    appended = [parse_qs(urlparse(u).query) for u in series_requests[before:]]
    assert appended and all(q["step"] == ["10"] for q in appended)
    first_from = datetime.fromisoformat(appended[0]["from"][0].replace("Z", "+00:00"))
    assert first_from.timestamp() >= last_shown - 30, (appended[0], last_shown)
    shot(page, "traffic-03-15min-live")

    # A circuit without traffic says so instead of drawing empty charts.
    inventory = Circuit.objects.get(name="inventory")
    page.goto(f"{own_control_plane.url}/circuits/{inventory.pk}/")
    page.wait_for_selector(".traffic-empty:not([hidden])", timeout=10_000)
    assert page.is_hidden(".traffic-charts")
    assert page.inner_text(".traffic-summary") == "No traffic in the last 1 h."
    assert page.get_attribute('button[data-range="1h"]', "aria-pressed") == "true"
    shot(page, "traffic-04-no-traffic")


def test_while_the_socket_is_closed_the_charts_catch_up_every_10_s(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User, sync_body: Any
) -> None:
    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]
    seq = iter(range(1, 100))

    def sync(bucket: int) -> None:
        body = sync_body(
            breakers=[{"name": "payments"}],
            telemetry=[report(next(seq), bucket, CALLS)],
            dropped_reports=0,
        )
        status, answer = own_control_plane.request("POST", "/api/v1/agent/sync", body, token=token)
        assert status == 200, answer

    now = int(time.time()) // 10 * 10
    sync(now - 40)
    circuit = Circuit.objects.get(name="payments")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, own_control_plane.url, "vera", "vera-pw-123!")
    # The dashboard's socket is refused from here on: the page stays "reconnecting".
    page.route_web_socket("**/ws/dashboard/**", lambda ws: ws.close())
    page.goto(f"{own_control_plane.url}/circuits/{circuit.pk}/?range=15m")
    page.wait_for_selector('[data-chart="calls"][data-points="1"]', timeout=10_000)
    assert page.get_attribute("#live-status", "data-live") == "off"
    page.evaluate("window.__sameDocument = true")

    sync(now - 30)
    page.wait_for_selector('[data-chart="calls"][data-points="2"]', timeout=25_000)
    stats = page.evaluate("window.switchyardTraffic")
    assert stats["timerFetches"] >= 1 and stats["liveMessages"] == 0, stats
    assert page.evaluate("window.__sameDocument") is True
    assert page.evaluate("window.switchyardLive.connects") == 0

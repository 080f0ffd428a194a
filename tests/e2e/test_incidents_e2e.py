"""The incident view end to end: a known incident (transitions on three circuits of two
services, a force and its release, a config change, an alert that fired and resolved)
in PostgreSQL, served by uvicorn, drawn by incidents.js in headless Chromium. Checks
the lanes and their counts, the order of the marks and of the table, the marks' labels
and links, and the phone layout. Screenshots go to
artifacts/screenshots/incidents-<width>-<scheme>.png."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User

from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess
from tests.e2e.test_a11y_e2e import horizontal_overflow

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]


def seed(operator: User) -> dict[str, Any]:
    """checkout/payments trips on web-1 and web-2 and half-opens, is forced open and
    released, and its alert fires and resolves; checkout/db trips once; ledger/postgres
    opens and closes and gets a new config version. Minutes before now."""
    from controlplane.alerts.models import Alert, AlertRule
    from controlplane.circuits.models import Circuit, Instance, Service, Transition
    from controlplane.circuits.operations import (
        create_config_version,
        force_circuit,
        release_circuit,
    )

    now = datetime.now(UTC)
    services = {n: Service.objects.create(name=n) for n in ("checkout", "ledger")}
    circuits = {
        f"{svc}/{name}": Circuit.objects.create(service=services[svc], name=name)
        for svc, name in (("checkout", "payments"), ("checkout", "db"), ("ledger", "postgres"))
    }
    instances = {
        f"{svc}/{i}": Instance.objects.create(
            service=s, instance_id=i, first_seen=now, last_seen=now
        )
        for svc, s in services.items()
        for i in ("web-1", "web-2")
    }
    made: list[tuple[str, str, str, str, int]] = [
        ("checkout/payments", "web-1", "closed", "open", 40),
        ("checkout/payments", "web-2", "closed", "open", 39),
        ("checkout/payments", "web-1", "open", "half_open", 30),
        ("checkout/db", "web-2", "closed", "open", 25),
        ("ledger/postgres", "web-1", "closed", "open", 20),
        ("ledger/postgres", "web-1", "open", "closed", 15),
    ]
    for seq, (circuit, instance, from_state, to_state, minutes) in enumerate(made, 1):
        c = circuits[circuit]
        Transition.objects.create(
            instance=instances[f"{c.service.name}/{instance}"],
            circuit=c,
            seq=seq,
            from_state=from_state,
            to_state=to_state,
            at=now - timedelta(minutes=minutes),
            reason="failure_rate",
            received_at=now,
        )
    pay = circuits["checkout/payments"]
    ago = lambda m: now - timedelta(minutes=m)  # noqa: E731
    force_circuit(pay, "forced_open", reason="provider outage", user=operator, now=ago(35))
    release_circuit(pay, user=operator, reason="provider back", now=ago(10))
    create_config_version(
        circuits["ledger/postgres"], {"failure_threshold": 9}, expected_version=0,
        user=operator, reason="fewer trips", now=ago(18),
    )  # fmt: skip
    rule = AlertRule.objects.create(
        name="payments open too long", kind="open_too_long", severity="critical"
    )
    Alert.objects.create(
        rule=rule,
        circuit=pay,
        status="resolved",
        started_at=ago(38),
        fired_at=ago(37),
        resolved_at=ago(5),
        created_at=ago(38),
    )
    return {"circuits": {k: c.pk for k, c in circuits.items()}}


def lanes(page: Any) -> list[dict[str, Any]]:
    """Each drawn lane: its name, title and the marks of each row (kind, time, x)."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('#incident-timeline [data-lane]')].map(g => ({
              name: g.dataset.lane,
              title: g.querySelector('.lane-title').textContent,
              rows: Object.fromEntries([...g.querySelectorAll('[data-row]')].map(r => [
                r.dataset.row,
                [...r.querySelectorAll('a')].map(a => ({
                  at: +a.dataset.at, x: a.firstElementChild.nextElementSibling
                    .getBoundingClientRect().x, label: a.getAttribute('aria-label'),
                  href: a.getAttribute('href'), state: a.dataset.state || null,
                  action: a.dataset.action || null, tabindex: a.getAttribute('tabindex'),
                })),
              ])),
            }))"""
        )
    )


def test_the_incident_is_drawn_in_order_with_links_and_listed_below(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User, operator: User
) -> None:
    ids = seed(operator)
    pay = ids["circuits"]["checkout/payments"]
    base = own_control_plane.url
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    login(page, base, "vera", "vera-pw-123!")
    page.click("nav >> text=Incidents")
    page.wait_for_selector("#incident-timeline[data-drawn]")
    assert page.get_attribute("#incident-timeline", "data-drawn") == "10"  # 6 + 3 + 1 alert

    drawn = lanes(page)
    assert [lane["name"] for lane in drawn] == ["checkout", "ledger"]
    assert drawn[0]["title"] == "checkout: 4 transitions, 2 operator actions, 1 alert"
    assert drawn[1]["title"] == "ledger: 2 transitions, 1 operator action, 0 alerts"
    counts = [{row: len(marks) for row, marks in lane["rows"].items()} for lane in drawn]
    assert counts == [
        {"transitions": 4, "actions": 2, "alerts": 1},
        {"transitions": 2, "actions": 1, "alerts": 0},
    ]
    checkout = drawn[0]["rows"]
    # Left to right is oldest to newest, on one axis for every row and lane.
    ticks = checkout["transitions"]
    assert [m["state"] for m in ticks] == ["open", "open", "half_open", "open"]
    assert [m["x"] for m in ticks] == sorted(m["x"] for m in ticks)
    assert ticks[0]["x"] < checkout["actions"][0]["x"] < ticks[2]["x"]  # 40, 35, 30 min ago
    assert [m["action"] for m in checkout["actions"]] == ["force", "release"]
    assert checkout["actions"][1]["x"] > drawn[1]["rows"]["transitions"][1]["x"]  # 10 < 15
    # Every mark has a label and opens its circuit around its moment (out of the Tab order:
    # the table below holds the same links).
    first = ticks[0]
    assert first["label"].startswith(
        "checkout/payments on web-1: closed to open (failure_rate) at "
    )
    assert first["tabindex"] == "-1"
    url = urlsplit(first["href"])
    assert url.path == f"/circuits/{pay}/" and url.fragment == "traffic"
    window = parse_qs(url.query)
    start = datetime.fromisoformat(window["from"][0])
    end = datetime.fromisoformat(window["to"][0])
    assert end - start == timedelta(minutes=30)
    assert abs((start + timedelta(minutes=15)).timestamp() * 1000 - first["at"]) < 1000
    (alert,) = checkout["alerts"]
    assert alert["label"].startswith("checkout/payments: alert payments open too long (critical)")
    assert "resolved at" in alert["label"]

    # The table: the same 11 events, newest first.
    rows = page.eval_on_selector_all(
        ".incident-table tbody tr",
        "rows => rows.map(r => [r.dataset.kind,"
        " r.querySelector('[data-label=Circuit]').innerText])",
    )
    assert rows == [
        ["resolved", "checkout/payments"],
        ["action", "checkout/payments"],
        ["transition", "ledger/postgres"],
        ["action", "ledger/postgres"],
        ["transition", "ledger/postgres"],
        ["transition", "checkout/db"],
        ["transition", "checkout/payments"],
        ["action", "checkout/payments"],
        ["fired", "checkout/payments"],
        ["transition", "checkout/payments"],
        ["transition", "checkout/payments"],
    ]
    assert page.inner_text("[data-count=transitions]") == "6 transitions"

    # A mark opens its circuit page at that window.
    page.click(f'#incident-timeline [data-lane="checkout"] a[href="{first["href"]}"]')
    page.wait_for_url(f"**/circuits/{pay}/**")
    page.wait_for_selector(".traffic-window")
    # From there, "incident view" comes back narrowed to the circuit, at that window.
    page.click("text=incident view")
    page.wait_for_selector("#incident-timeline[data-drawn]")
    assert parse_qs(urlsplit(page.url).query)["circuit"] == [str(pay)]
    assert [lane["name"] for lane in lanes(page)] == ["checkout"]
    assert (
        page.get_attribute("#incident-timeline", "data-drawn") == "5"
    )  # 3 transitions, the force, the alert

    for width in (1400, 390):
        for scheme in ("light", "dark"):
            shot = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme=scheme
            )
            p = shot.new_page()
            login(p, base, "vera", "vera-pw-123!")
            p.goto(f"{base}/incidents/")
            p.wait_for_selector("#incident-timeline[data-drawn]")
            svg_width = p.evaluate(
                "document.querySelector('.incident-svg').getBoundingClientRect().width"
            )
            assert svg_width <= width
            if width == 390:
                assert horizontal_overflow(p) is None
            p.screenshot(
                path=str(screenshot_dir() / f"incidents-{width}-{scheme}.png"), full_page=True
            )
            shot.close()

    # The timeline follows the window's width.
    page.goto(f"{base}/incidents/")
    page.wait_for_selector("#incident-timeline[data-drawn]")
    page.set_viewport_size({"width": 600, "height": 900})
    page.wait_for_function(
        "() => document.querySelector('.incident-svg').getBoundingClientRect().width < 600"
    )
    context.close()


def test_a_bad_circuit_id_is_named_on_the_page(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    login(page, own_control_plane.url, "vera", "vera-pw-123!")
    response = page.goto(f"{own_control_plane.url}/incidents/?circuit=pay")
    assert response is not None and response.status == 400
    assert page.inner_text("[role=alert]").startswith("circuit: must be an id")
    assert page.get_attribute('input[name="circuit"]', "aria-invalid") == "true"
    page.screenshot(path=str(screenshot_dir() / "incidents-bad-circuit.png"), full_page=True)
    context.close()

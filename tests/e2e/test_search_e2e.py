"""The header's search end to end in headless Chromium, against a real uvicorn server:
"/" focuses the box on any page, results come as you type, arrow keys and Enter open
a circuit, Escape closes; and the same at a phone's 390 px. Screenshots (search-*.png)
go to artifacts/screenshots/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.models import Circuit, Service
from controlplane.circuits.operations import force_circuit
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess

pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

FLEET = {
    "checkout": ["payments", "payments-eu", "db"],
    "billing": ["pager", "ledger-db"],
    "search-api": ["index"],
}
OPTIONS = '#search-results [role="option"]'
# axe-core where the accessibility work installs it (npm, never a CDN); the scan with the
# list open runs where it is installed.
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def circuits(transactional_db: None) -> dict[str, Circuit]:
    made = {}
    for service, names in FLEET.items():
        svc = Service.objects.create(name=service)
        for name in names:
            made[f"{service}/{name}"] = Circuit.objects.create(service=svc, name=name)
    force_circuit(made["checkout/payments"], "forced_open", reason="drill", user=None)
    return made


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"))


def labels(page: Any) -> list[str]:
    return [str(t) for t in page.locator(f"{OPTIONS} .search-label").all_inner_texts()]


def wait_labels(page: Any, expected: list[str], timeout: float = 5.0) -> None:
    """Poll until the list shows ``expected`` (in order), or fail naming what it shows."""
    deadline = time.monotonic() + timeout
    while labels(page) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"the list shows {labels(page)}, expected {expected}")
        page.wait_for_timeout(20)


def press_slash_focuses_the_box(page: Any) -> None:
    page.locator("main").click(position={"x": 5, "y": 5})  # focus on no field
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search-q"
    assert page.input_value("#search-q") == ""  # the "/" itself is not typed


def test_slash_type_arrows_enter_on_two_pages(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User, circuits: Any
) -> None:
    url = own_control_plane.url
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    login(page, url, "vera", "vera-pw-123!")
    box = page.locator("#search-q")
    assert box.get_attribute("role") == "combobox"
    assert box.get_attribute("aria-expanded") == "false"

    # "/" in another field is typed there, not taken by the search.
    page.fill('input[name="name"]', "")
    page.focus('input[name="name"]')
    page.keyboard.press("/")
    assert page.input_value('input[name="name"]') == "/"
    assert page.evaluate("document.activeElement.name") == "name"

    # Page 1, the overview: the list narrows with every key.
    press_slash_focuses_the_box(page)
    page.keyboard.type("p")
    wait_labels(
        page,
        [
            "billing/pager",
            "checkout/payments",
            "checkout/payments-eu",
            "search-api",
            "search-api/index",
        ],
    )
    assert box.get_attribute("aria-expanded") == "true"
    assert box.get_attribute("aria-controls") == "search-results"
    page.keyboard.type("a")
    wait_labels(page, ["billing/pager", "checkout/payments", "checkout/payments-eu"])
    page.keyboard.type("y")
    wait_labels(page, ["checkout/payments", "checkout/payments-eu"])
    assert page.inner_text("#search-status") == "2 results"
    forced = page.locator(f"{OPTIONS} .search-state").first
    assert forced.get_attribute("data-state") == "forced_open"
    assert forced.inner_text() == "forced open"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    active = box.get_attribute("aria-activedescendant")
    chosen = page.locator(f"#{active}")
    assert chosen.get_attribute("aria-selected") == "true"
    assert chosen.locator(".search-label").inner_text() == "checkout/payments-eu"
    assert page.locator(f'{OPTIONS}[aria-selected="true"]').count() == 1
    # The open list stays inside the window: nothing scrolls sideways.
    popup = page.locator(".search-popup").bounding_box()
    assert popup is not None and popup["x"] >= 0 and popup["x"] + popup["width"] <= 1280
    assert page.evaluate("[window.scrollX, document.documentElement.scrollWidth]") == [0, 1280]
    shot(page, "search-desktop-overview-pay")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/circuits/{circuits['checkout/payments-eu'].pk}/")

    # Page 2, that circuit's page: again "/", type, ArrowDown, Enter.
    press_slash_focuses_the_box(page)
    page.keyboard.type("ledg")
    wait_labels(page, ["billing/ledger-db"])
    page.keyboard.press("ArrowDown")
    shot(page, "search-desktop-circuit-page-ledg")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/circuits/{circuits['billing/ledger-db'].pk}/")

    # Typed fast, only the last query's answer is drawn; Escape closes, then clears.
    press_slash_focuses_the_box(page)
    page.keyboard.type("search-api", delay=0)
    wait_labels(page, ["search-api", "search-api/index"])
    stats = page.evaluate("window.switchyardSearch")
    assert stats["rendered"] == 1, stats
    page.keyboard.press("Escape")
    assert box.get_attribute("aria-expanded") == "false"
    assert page.locator(".search-popup").is_hidden()
    assert box.get_attribute("aria-activedescendant") is None
    page.keyboard.press("Escape")
    assert page.input_value("#search-q") == ""

    # Enter with no option chosen submits the form: the results page.
    page.keyboard.type("db")
    wait_labels(page, ["checkout/db", "billing/ledger-db"])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/search/?q=db")
    assert page.locator(".search-page-results li").count() == 2
    shot(page, "search-results-page")


def test_search_at_390_px(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User, circuits: Any
) -> None:
    url = own_control_plane.url
    page = browser.new_page(viewport={"width": 390, "height": 844})
    login(page, url, "vera", "vera-pw-123!")
    # The header (the box on a row of its own) fits the width on the overview, and so at
    # the widths where the box shares the header or wraps below it; the overview's own
    # content is the phone-layout work's, so the page-wide check below runs on the
    # services page.
    header_width = "document.querySelector('header.top').scrollWidth"
    assert page.evaluate(header_width) <= 390
    for width in (600, 800, 1000):
        page.set_viewport_size({"width": width, "height": 844})
        assert page.evaluate(header_width) <= width, width
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/services/")
    box = page.locator("#search-q").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    press_slash_focuses_the_box(page)
    page.keyboard.type("pay")
    wait_labels(page, ["checkout/payments", "checkout/payments-eu"])
    popup = page.locator(".search-popup").bounding_box()
    assert popup is not None and popup["x"] >= 0 and popup["x"] + popup["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.keyboard.press("ArrowDown")
    shot(page, "search-phone-390")
    # A tap chooses too.
    page.locator(OPTIONS).nth(1).click()
    page.wait_for_url(f"{url}/circuits/{circuits['checkout/payments-eu'].pk}/")


@pytest.mark.skipif(not AXE.exists(), reason=f"needs axe-core at {AXE}")
def test_axe_finds_nothing_with_the_list_open_and_on_the_results_page(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User, circuits: Any
) -> None:
    url = own_control_plane.url

    def violations(page: Any) -> list[Any]:
        # Evaluated through the DevTools protocol: a <script> with its text would be
        # refused by the page's Content-Security-Policy (no inline script).
        page.evaluate(AXE.read_text())
        result = page.evaluate(
            """tags => axe.run(document, {
              runOnly: {type: 'tag', values: tags}, resultTypes: ['violations'],
            })""",
            AXE_TAGS,
        )
        return [(v["id"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]

    for scheme in ("light", "dark"):
        for width in (1280, 390):
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.emulate_media(color_scheme=scheme)
            login(page, url, "vera", "vera-pw-123!")
            page.goto(f"{url}/services/")
            press_slash_focuses_the_box(page)
            page.keyboard.type("pay")
            wait_labels(page, ["checkout/payments", "checkout/payments-eu"])
            page.keyboard.press("ArrowDown")
            assert violations(page) == [], (scheme, width, "list open")
            page.goto(f"{url}/search/?q=pay")
            assert violations(page) == [], (scheme, width, "results page")
            page.close()

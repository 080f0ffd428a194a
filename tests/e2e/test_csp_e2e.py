"""The Content-Security-Policy enforced, end to end in headless Chromium against a real
uvicorn server (PostgreSQL, Redis): every page of the dashboard (the a11y test's list),
the API docs, the browsable API and the admin load with the policy header and the
browser reports no violation (``securitypolicyviolation`` events, recorded from before
any script of the page runs) and logs no error; and the pages still work: the live
update arrives over the WebSocket, the charts draw, the search box answers, the
incident timeline draws. Screenshots go to artifacts/screenshots/csp-<page>.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.models import Circuit
from controlplane.circuits.operations import force_circuit
from tests.core.test_security_headers import DOCS_POLICY, HEADERS, POLICY, parse_policy
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess
from tests.e2e.test_a11y_e2e import PAGES, open_page, seed

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

# Runs in every page and frame before its own scripts: each violation the browser
# reports is kept in window.__csp.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__csp.push({directive: e.effectiveDirective, blocked: e.blockedURI,
                     source: e.sourceFile, line: e.lineNumber, sample: e.sample,
                     disposition: e.disposition});
});
"""


class Watched:
    """A browser context whose pages record violations, console errors and warnings,
    uncaught errors, and the headers of every document they load."""

    def __init__(self, browser: Any, *, width: int = 1400) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.console: list[str] = []
        self.documents: list[tuple[str, dict[str, str]]] = []
        self.context.on("page", self._watch)

    def _watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text} ({message.location['url']})")

    def _response(self, response: Any) -> None:
        if response.request.resource_type == "document":
            self.documents.append((response.url, response.all_headers()))

    def errors(self) -> list[str]:
        """The console's errors and warnings but two that are no fault: the site has no
        favicon (Chromium asks for one), and a form page answered 400 with its errors
        (Chromium logs every document answered 4xx)."""
        documents = {url for url, _ in self.documents}
        return [
            line
            for line in self.console
            if not (
                line.startswith("error: Failed to load resource")
                and (
                    line.endswith("/favicon.ico)")
                    or ("status of 400" in line and line.rsplit("(", 1)[1][:-1] in documents)
                )
            )
        ]

    def violations(self, page: Any) -> list[dict[str, Any]]:
        return list(page.evaluate("window.__csp"))

    def close(self) -> None:
        self.context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"csp-{name}.png"), full_page=True)


def assert_document_headers(watched: Watched, docs_path: str = "/api/docs/") -> None:
    assert watched.documents, "no document loaded"
    for url, headers in watched.documents:
        policy = DOCS_POLICY if docs_path in url else POLICY
        assert "content-security-policy-report-only" not in headers, url
        assert parse_policy(headers["content-security-policy"]) == policy, url
        got = {name: headers.get(name.lower()) for name in HEADERS}
        assert got == HEADERS, url


@pytest.fixture
def seeded(
    own_control_plane: ControlPlaneProcess, operator: User, sync_body: Any
) -> Iterator[dict[str, Any]]:
    ids, heartbeat = seed(own_control_plane, sync_body, operator)
    heartbeat()
    yield ids


def test_every_dashboard_page_works_with_the_policy_enforced_and_violates_nothing(
    own_control_plane: ControlPlaneProcess, browser: Any, seeded: dict[str, Any]
) -> None:
    base = own_control_plane.url
    signed_in = Watched(browser)
    anonymous = Watched(browser)
    page = signed_in.context.new_page()
    login(page, base, "otto", "otto-pw-123!")
    page.close()
    failures: list[str] = []
    for spec in PAGES:
        watched = signed_in if spec.logged_in else anonymous
        page = open_page(watched.context, base, spec, seeded)
        found = watched.violations(page)
        if found:
            failures.append(f"{spec.name}: {found}")
        shot(page, spec.name)
        page.close()
    assert failures == []
    assert signed_in.errors() == [] and anonymous.errors() == []
    # Every document, the pages reached by posting a form included.
    assert len(signed_in.documents) >= len([p for p in PAGES if p.logged_in])
    assert_document_headers(signed_in)
    assert_document_headers(anonymous)
    signed_in.close()
    anonymous.close()


def test_live_updates_charts_search_and_incidents_work_under_the_policy(
    own_control_plane: ControlPlaneProcess,
    browser: Any,
    seeded: dict[str, Any],
    operator: User,
) -> None:
    base = own_control_plane.url
    watched = Watched(browser)
    page = watched.context.new_page()
    login(page, base, "otto", "otto-pw-123!")

    # The overview's WebSocket (connect-src 'self' covers ws: to the same host): a
    # circuit forced now changes its tile without a reload.
    page.wait_for_selector('#live-status[data-live="on"]', timeout=15_000)
    tile = '.tile[data-circuit="checkout/inventory"]'
    assert page.get_attribute(tile, "data-state") == "closed"
    force_circuit(
        Circuit.objects.get(pk=seeded["inventory"]),
        "forced_open",
        reason="drill under the policy",
        user=operator,
    )
    page.wait_for_selector(f'{tile}[data-state="forced_open"]', timeout=15_000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot(page, "live-update")

    # The search box asks the server as one types and lists what it found.
    page.fill("#search-q", "pay")
    page.wait_for_selector('#search-results [role="option"]', timeout=10_000)
    assert "checkout/payments" in page.inner_text("#search-results")
    shot(page, "search-box")

    # The circuit page's four charts draw (uPlot's canvases, its styles set by script).
    page.goto(f"{base}/circuits/{seeded['payments']}/")
    page.wait_for_selector(
        '[data-chart="calls"]:not([data-points="0"])[data-points]', timeout=15_000
    )
    assert page.locator(".traffic-chart canvas").count() == 4
    assert int(page.get_attribute('[data-chart="calls"]', "data-points") or 0) > 0
    shot(page, "charts")

    # The incident view draws its timeline from its JSON data block.
    page.goto(f"{base}/incidents/")
    page.wait_for_selector("#incident-timeline[data-drawn]", timeout=15_000)
    assert int(page.get_attribute("#incident-timeline", "data-drawn") or 0) > 0

    assert watched.violations(page) == []
    assert watched.errors() == []
    assert_document_headers(watched)
    watched.close()


def test_api_docs_browsable_api_and_admin_violate_nothing(
    own_control_plane: ControlPlaneProcess, browser: Any, seeded: dict[str, Any]
) -> None:
    base = own_control_plane.url
    User.objects.create_superuser("root", password="root-pw-123!")
    watched = Watched(browser)
    page = watched.context.new_page()

    # The admin: its own sign-in form, then its index, a list with filters, a form.
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "root-pw-123!")
    page.click('input[type="submit"]')
    page.wait_for_url(f"{base}/admin/")
    checked: list[tuple[str, str]] = [("admin", "/admin/")]
    for name, path, ready in [
        ("admin-users", "/admin/auth/user/", "#result_list"),
        ("admin-user-add", "/admin/auth/user/add/", "#user_form"),
        ("admin-circuits", "/admin/circuits/circuit/", "#changelist"),
    ]:
        page.goto(base + path)
        page.wait_for_selector(ready)
        checked.append((name, path))
        assert watched.violations(page) == [], name
    shot(page, "admin")

    # Swagger UI: its script from /api/docs/?script, the schema drawn into the page.
    page.goto(f"{base}/api/docs/")
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=20_000)
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert "Switchyard control plane API" in page.inner_text(".swagger-ui .title")
    page.locator(".swagger-ui .opblock-summary").first.click()
    page.wait_for_selector(".swagger-ui .opblock-body")
    assert watched.violations(page) == [], "api docs"
    shot(page, "api-docs")

    # The browsable API with its Filters button and dialog (Bootstrap's script).
    page.goto(f"{base}/api/v1/circuits/")
    page.wait_for_selector(".request-form-aside")
    assert (
        page.evaluate("getComputedStyle(document.querySelector('.request-form-aside')).float")
        == "right"
    )
    page.click(".request-form-aside")
    page.wait_for_selector("#filtersModal.in", timeout=5_000)
    assert watched.violations(page) == [], "browsable api"
    shot(page, "browsable-api")

    assert watched.errors() == []
    assert_document_headers(watched)
    watched.close()


def test_the_recorder_sees_what_the_policy_blocks(
    own_control_plane: ControlPlaneProcess, browser: Any, seeded: dict[str, Any]
) -> None:
    """The listener the tests above rely on: an inline script, a style attribute and a
    script from another host are refused and recorded, with a console error each."""
    watched = Watched(browser)
    page = watched.context.new_page()
    page.goto(f"{own_control_plane.url}/login/")
    page.evaluate(
        """() => {
          const s = document.createElement('script');
          s.textContent = 'window.__ran = true';
          document.body.appendChild(s);
          document.body.setAttribute('style', 'background: red');
          const x = document.createElement('script');
          x.src = 'https://scripts.example.com/x.js';
          document.body.appendChild(x);
        }"""
    )
    page.wait_for_function("() => window.__csp.length >= 3", timeout=5_000)
    assert page.evaluate("window.__ran === undefined")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 0, 0)"
    directives = sorted(v["directive"] for v in watched.violations(page))
    assert directives == ["script-src-elem", "script-src-elem", "style-src-attr"], directives
    assert sum("Content Security Policy" in line for line in watched.console) >= 2
    watched.close()

"""The dashboard's accessibility, phone layout and dark mode, end to end in headless
Chromium against a real uvicorn server (PostgreSQL, Redis): axe-core (the project's
npm test dependency, node_modules/axe-core, never a CDN) scans every page in the light
and the dark colour scheme, no page scrolls sideways at 390 px, and the four operator
actions work from the keyboard alone. Screenshots of every page at 390 px and 1400 px,
light and dark, go to artifacts/screenshots/a11y-<page>-<width>-<scheme>.png."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess, wait_for
from tests.e2e.test_traffic_charts_e2e import report

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

# The rules the scan applies: WCAG 2.0 and 2.1, levels A and AA (docs/dashboard.md).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SCHEMES = ("light", "dark")
WIDTHS = (390, 1400)
PHONE = 390


# --- the pages --------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of the dashboard as the scan reaches it.

    ``path`` is formatted with the seeded ids (``{payments}``, ``{alert}``...); a page
    reached by submitting a form opens ``path`` first, then ``submit`` fills and posts
    it; ``logged_in=False`` opens it in a fresh, anonymous browser context."""

    name: str
    path: str
    submit: Callable[[Any], None] | None = None
    logged_in: bool = True
    ready: tuple[str, ...] = field(default_factory=tuple)


def _confirm_force(page: Any) -> None:
    page.fill('.override-form input[name="reason"]', "provider outage")
    page.fill('.override-form input[name="expires_in_minutes"]', "30")
    page.click('.override-form button[value="forced_open"]')


def _force_without_reason(page: Any) -> None:
    page.click('.override-form button[value="forced_open"]')


def _silence_without_reason(page: Any) -> None:
    page.click("button:has-text('Silence…')")


def _canary_out_of_range(page: Any) -> None:
    page.click("details.rollout-new > summary")
    page.fill("#canary-percent", "100")
    page.click("#canary-start")


def _bad_login(page: Any) -> None:
    # A name of its own: its failures (one per pass) lock no one out (django-axes).
    page.fill('input[name="username"]', "nobody")
    page.fill('input[name="password"]', "not the password")
    page.click('button[type="submit"]')


def _review_config(page: Any) -> None:
    page.fill("#cfg-failure_threshold", "8")
    page.fill("#cfg-reason", "fewer false trips")
    page.click(".config-form button[type=submit]")


def _config_out_of_range(page: Any) -> None:
    page.fill("#cfg-failure_threshold", "0")
    page.click(".config-form button[type=submit]")


def _confirm_silence(page: Any) -> None:
    page.check('input[name="match"][value="circuit"]')
    page.fill('input[name="reason"]', "known provider outage")
    page.fill('input[name="expires_in_minutes"]', "45")
    page.click("button:has-text('Silence…')")


def _token_beyond_rights(page: Any) -> None:
    page.select_option('select[name="scope"]', "admin")
    page.click("button:has-text('Create token')")


def _create_token(page: Any) -> None:
    page.select_option('select[name="scope"]', "read")
    page.fill('input[name="expires_in_days"]', "7")
    page.click("button:has-text('Create token')")


# Every page of the dashboard: a page added later joins the scan, the phone check and
# the screenshots with one line here.
PAGES = [
    Page("overview", "/"),
    Page(
        "circuit",
        "/circuits/{payments}/",
        ready=('[data-chart="calls"]:not([data-points="0"])[data-points]',),
    ),
    Page(
        "circuit-closed",
        "/circuits/{inventory}/",
        ready=(".traffic-summary:not(:has-text('Loading'))",),
    ),
    Page("confirm", "/circuits/{inventory}/", submit=_confirm_force, ready=(".confirm",)),
    Page(
        "circuit-error",
        "/circuits/{inventory}/",
        submit=_force_without_reason,
        ready=('.override-form [aria-invalid="true"]',),
    ),
    Page(
        "circuit-window",
        "/circuits/{payments}/?{window}",
        ready=(".traffic-window", '[data-chart="calls"]:not([data-points="0"])[data-points]'),
    ),
    Page(
        "config-confirm",
        "/circuits/{inventory}/",
        submit=_review_config,
        ready=(".config-confirm-form",),
    ),
    Page(
        "config-error",
        "/circuits/{inventory}/",
        submit=_config_out_of_range,
        ready=('.config-form [aria-invalid="true"]',),
    ),
    Page("circuit-rollout", "/circuits/{ledger}/", ready=("[data-rollout-groups]",)),
    Page(
        "rollout-error",
        "/circuits/{email}/",
        submit=_canary_out_of_range,
        ready=('.rollout-start [aria-invalid="true"]',),
    ),
    Page("search", "/search/?q=pay", ready=("#main h1",)),
    Page("services", "/services/"),
    Page("instances", "/instances/"),
    Page("alerts", "/alerts/"),
    Page("silence", "/alerts/silence?alert={alert}", ready=(".silence-form",)),
    Page(
        "silence-error",
        "/alerts/silence?alert={alert}",
        submit=_silence_without_reason,
        ready=('.silence-form [aria-invalid="true"]',),
    ),
    Page(
        "silence-confirm",
        "/alerts/silence?alert={alert}",
        submit=_confirm_silence,
        ready=(".confirm",),
    ),
    Page("alert-setup", "/alerts/rules/", ready=("#rules",)),
    Page("config-diff", "/circuits/{inventory}/config/diff?from=1&to=1", ready=(".version-diff",)),
    Page("audit", "/audit/"),
    Page("tokens", "/tokens/"),
    Page(
        "tokens-error",
        "/tokens/",
        submit=_token_beyond_rights,
        ready=('.silence-form [aria-invalid="true"]',),
    ),
    Page("tokens-created", "/tokens/", submit=_create_token, ready=("#token-secret",)),
    Page("incidents", "/incidents/", ready=("#incident-timeline[data-drawn]",)),
    Page("incidents-error", "/incidents/?circuit=pay", ready=("#incident-error",)),
    Page("login", "/login/", logged_in=False),
    Page("login-error", "/login/", submit=_bad_login, logged_in=False, ready=(".login .error",)),
]


# --- the seeded fleet ---------------------------------------------------------------------


def seed(
    server: ControlPlaneProcess, sync_body: Any, operator: User
) -> tuple[dict[str, Any], Callable[[], None]]:
    """checkout/payments open and forced open, with traffic, transitions and two firing
    alerts (one acknowledged); checkout/ledger half open, checkout/email forced closed,
    checkout/inventory closed; a silence, audit rows; two instances. Returns the ids the
    pages' paths name and a heartbeat: both instances sync again (they stay live)."""
    from controlplane.alerts.models import Alert, AlertRule, Silence
    from controlplane.circuits.auth import create_agent_token
    from controlplane.circuits.models import Circuit, Instance, Service
    from controlplane.circuits.operations import force_circuit
    from controlplane.circuits.rollouts import start_rollout
    from tests.dashboard.conftest import transition

    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]
    now = int(time.time()) // 10 * 10
    buckets = [now - 90 + 10 * i for i in range(8)]
    reports = [
        report(i + 1, b, 50 + 10 * i, 20 if i in (4, 5) else 0) for i, b in enumerate(buckets)
    ]

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat()

    def sync_states(first: bool) -> None:
        """Both instances report; the first time with web-1's transitions and traffic."""
        for n, instance in enumerate(("web-1", "web-2")):
            body = sync_body(
                instance={"id": instance},
                breakers=[
                    {
                        "name": "payments",
                        "state": "open",
                        "failure_rate": 0.62,
                        "calls": 900,
                        "failures": 300,
                        "rejected": 40,
                        "state_since": iso(buckets[4]),
                        "retry_after": 20.0,
                    },
                    {"name": "ledger", "state": "half_open", "failure_rate": 0.3, "calls": 80},
                    {"name": "email", "state": "closed", "calls": 20},
                    {"name": "inventory", "state": "closed", "failure_rate": 0.02, "calls": 400},
                ],
                transitions=(
                    [
                        transition(1, "closed", "open", iso(buckets[2]), 0.6),
                        transition(2, "open", "half_open", iso(buckets[3]), 0.6),
                        transition(3, "half_open", "open", iso(buckets[4]), 0.62),
                    ]
                    if n == 0 and first
                    else []
                ),
                telemetry=reports if n == 0 and first else [],
                dropped_reports=0,
            )
            status, answer = server.request("POST", "/api/v1/agent/sync", body, token=token)
            assert status == 200, answer

    sync_states(first=True)
    # web-2's first sync carries nothing to lose: it is answered before its write and
    # stored with the next write, within 0.1 s (docs/sync-protocol.md).
    assert wait_for(lambda: Instance.objects.filter(service=service).count() == 2, 10.0)
    circuits = {c.name: c for c in Circuit.objects.all()}
    force_circuit(circuits["payments"], "forced_open", reason="provider outage", user=operator)
    force_circuit(
        circuits["email"], "forced_closed", reason="mail relay maintenance", user=operator
    )

    started = datetime.now(UTC) - timedelta(minutes=5)
    rules = [
        AlertRule.objects.create(name=f"payments {kind}", kind=kind, severity=sev, params={})
        for kind, sev in (("open_too_long", "critical"), ("failure_rate", "warning"))
    ]
    firing = Alert.objects.create(
        rule=rules[0],
        circuit=circuits["payments"],
        status="firing",
        started_at=started,
        fired_at=started + timedelta(minutes=1),
        created_at=started,
        forced=True,
    )
    acked = Alert.objects.create(
        rule=rules[1],
        circuit=circuits["payments"],
        status="firing",
        started_at=started,
        fired_at=started + timedelta(minutes=1),
        created_at=started,
        acknowledged_at=started + timedelta(minutes=2),
        acknowledged_by=operator,
    )
    Silence.objects.create(
        service=service,
        starts_at=started,
        expires_at=started + timedelta(hours=2),
        reason="payments provider maintenance",
        created_by=operator,
    )
    # A canary of ledger on web-2 (docs/rollouts.md).
    start_rollout(
        circuits["ledger"], user=operator, config={"failure_threshold": 3},
        instances=["web-2"], auto_rollback_margin=1.0, reason="fewer trips",
    )  # fmt: skip
    ids = {
        "payments": circuits["payments"].pk,
        "inventory": circuits["inventory"].pk,
        "ledger": circuits["ledger"].pk,
        "email": circuits["email"].pk,
        "alert": firing.pk,
        "acked": acked.pk,
        "window": firing.window_query,  # what the alert's notification links to
    }
    return ids, lambda: sync_states(first=False)


# --- helpers ---------------------------------------------------------------------------------


def open_page(context: Any, base: str, spec: Page, ids: dict[str, Any]) -> Any:
    page = context.new_page()
    page.goto(base + spec.path.format(**ids))
    if spec.logged_in:
        page.wait_for_selector('#live-status[data-live="on"]', timeout=15_000)
    if spec.submit is not None:
        spec.submit(page)
        page.wait_for_load_state("load")
    for selector in spec.ready:
        page.wait_for_selector(selector, timeout=15_000)
    return page


def axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations of the page (AXE_TAGS), from node_modules."""
    assert AXE.exists(), f"{AXE} is missing: run `make node` (npm ci)"
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: a <script> with its text would be
        # refused by the page's Content-Security-Policy (no inline script).
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        """tags => axe.run(document, {
          runOnly: {type: 'tag', values: tags}, resultTypes: ['violations'],
        })""",
        AXE_TAGS,
    )
    assert result["testEngine"]["version"] == "4.14.1", result["testEngine"]
    return list(result["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"  {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:8]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {node['target']}: {summary[:240]}")
    return "\n".join(lines)


def horizontal_overflow(page: Any) -> str | None:
    """None if the page fits its width, else what sticks out."""
    return page.evaluate(
        """() => {
          const doc = document.documentElement;
          if (doc.scrollWidth <= window.innerWidth) return null;
          const wide = [];
          document.querySelectorAll('body *').forEach(el => {
            const r = el.getBoundingClientRect();
            if (r.right > window.innerWidth + 1 && wide.length < 6)
              wide.push(el.tagName.toLowerCase() + '.' + el.className
                        + ' right=' + Math.round(r.right));
          });
          return 'scrollWidth ' + doc.scrollWidth + ' > ' + window.innerWidth
                 + ': ' + wide.join(', ');
        }"""
    )


def shot(page: Any, name: str, width: int, scheme: str) -> None:
    page.screenshot(
        path=str(screenshot_dir() / f"a11y-{name}-{width}-{scheme}.png"), full_page=True
    )


# --- the tests -------------------------------------------------------------------------------


def test_every_page_passes_axe_in_both_schemes_fits_a_phone_and_is_photographed(
    own_control_plane: ControlPlaneProcess, browser: Any, operator: User, sync_body: Any
) -> None:
    ids, heartbeat = seed(own_control_plane, sync_body, operator)
    base = own_control_plane.url
    failures: list[str] = []
    results: list[str] = []
    for scheme in SCHEMES:
        for width in WIDTHS:
            heartbeat()  # every pass sees the same fleet: live instances, the same states
            context = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme=scheme
            )
            session = context.new_page()
            login(session, base, "otto", "otto-pw-123!")
            session.close()
            anonymous = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme=scheme
            )
            for spec in PAGES:
                page = open_page(context if spec.logged_in else anonymous, base, spec, ids)
                page.emulate_media(color_scheme=scheme)
                assert page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches"), (
                    spec.name,
                    scheme,
                )
                violations = axe(page)
                results.append(f"{spec.name} {width}px {scheme}: {len(violations)} violation(s)")
                if violations:
                    failures.append(f"{spec.name} at {width} px, {scheme}:\n{describe(violations)}")
                if width == PHONE:
                    overflow = horizontal_overflow(page)
                    if overflow:
                        failures.append(
                            f"{spec.name} at {width} px, {scheme} scrolls sideways: {overflow}"
                        )
                shot(page, spec.name, width, scheme)
                page.close()
            context.close()
            anonymous.close()
    print("\n".join(results))
    assert not failures, "\n".join(failures)


def _tab_to(page: Any, selector: str, *, backwards: bool = False, limit: int = 120) -> None:
    """Tab (or Shift+Tab) until the focused element matches ``selector``."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate(
            "s => !!document.activeElement && document.activeElement.matches(s)", selector
        ):
            # The focused control shows a visible focus ring.
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("none", ""), (selector, outline)
            return
    raise AssertionError(f"{limit} presses of {key} never reached {selector}")


def test_force_open_release_and_acknowledge_by_keyboard_alone(
    own_control_plane: ControlPlaneProcess, browser: Any, operator: User, sync_body: Any
) -> None:
    from controlplane.alerts.models import Alert
    from controlplane.circuits.models import Override

    ids, _ = seed(own_control_plane, sync_body, operator)
    base = own_control_plane.url
    context = browser.new_context(viewport={"width": PHONE, "height": 844})
    page = context.new_page()
    page.goto(f"{base}/login/?next=/")
    # Log in: Tab to the username, type, Tab, type, Enter.
    _tab_to(page, 'input[name="username"]')
    page.keyboard.type("otto")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "password"
    page.keyboard.type("otto-pw-123!")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=15_000)

    # The skip link comes first and moves the focus to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.matches('a.skip')")
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"

    # Overview -> the inventory tile -> its page.
    _tab_to(page, '.tile[data-circuit="checkout/inventory"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/circuits/{ids['inventory']}/")
    page.wait_for_selector('#live-status[data-live="on"]', timeout=15_000)

    # Force open: reason, expiry, the Force open button, then the confirm page.
    _tab_to(page, '.override-form input[name="reason"]')
    page.keyboard.type("keyboard drill")
    page.keyboard.press("Tab")
    page.keyboard.type("15")
    _tab_to(page, '.override-form button[value="forced_open"]')
    page.keyboard.press("Enter")
    page.wait_for_selector(".confirm h1")
    assert "Force open" in page.inner_text(".confirm h1")
    # On the confirm page, Cancel is one Tab past Confirm; Shift+Tab comes back.
    _tab_to(page, ".confirm button.danger")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Cancel"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Space")
    page.wait_for_url(f"{base}/circuits/{ids['inventory']}/")
    page.wait_for_selector(".override >> text=forced open")
    override = Override.objects.filter(circuit_id=ids["inventory"]).latest("id")
    assert override.state == "forced_open" and override.reason == "keyboard drill"

    # Release, through its confirm page.
    _tab_to(page, '.override-form input[name="reason"]')
    page.keyboard.type("drill over")
    _tab_to(page, '.override-form button[value="release"]')
    page.keyboard.press("Enter")
    page.wait_for_selector(".confirm h1")
    _tab_to(page, ".confirm button.danger")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/circuits/{ids['inventory']}/")
    assert page.locator(".override").count() == 0
    assert not Override.objects.filter(circuit_id=ids["inventory"], ended_at__isnull=True).exists()

    # Acknowledge the firing alert: Alerts in the navigation, then its button.
    page.keyboard.press("Tab")  # the skip link
    _tab_to(page, 'header nav a[href="/alerts/"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/alerts/")
    _tab_to(page, f'tr[data-alert-id="{ids["alert"]}"] button')
    page.keyboard.press("Enter")
    page.wait_for_selector(f'tr[data-alert-id="{ids["alert"]}"] >> text=by otto at', timeout=10_000)
    assert Alert.objects.get(pk=ids["alert"]).acknowledged_by == operator
    context.close()


def test_the_charts_follow_the_colour_scheme_and_the_width(
    own_control_plane: ControlPlaneProcess, browser: Any, operator: User, sync_body: Any
) -> None:
    ids, _ = seed(own_control_plane, sync_body, operator)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
    page = context.new_page()
    login(page, own_control_plane.url, "otto", "otto-pw-123!")
    page.goto(f"{own_control_plane.url}/circuits/{ids['payments']}/")
    page.wait_for_selector(
        '[data-chart="calls"]:not([data-points="0"])[data-points]', timeout=15_000
    )
    marker = '[data-chart="calls"] .u-legend .u-series:nth-child(2) .u-marker'

    def marker_colour() -> str:
        return str(
            page.evaluate(f"getComputedStyle(document.querySelector('{marker}')).borderColor")
        )

    assert marker_colour() == "rgb(21, 101, 192)"  # --forced_closed, light
    wide = page.evaluate("document.querySelector('[data-chart=\"calls\"] canvas').width")

    # The system switches to dark: the charts are drawn again in the dark colours.
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => window.switchyardTraffic.redraws === 1")
    page.wait_for_selector('[data-chart="calls"]:not([data-points="0"])[data-points]')
    assert marker_colour() == "rgb(88, 166, 255)"  # --forced_closed, dark
    assert page.locator(".traffic-chart canvas").count() == 4

    # A phone-wide window: the charts shrink to the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(
        "() => document.querySelector('[data-chart=\"calls\"] .uplot')"
        ".getBoundingClientRect().width"
        " <= document.querySelector('[data-chart=\"calls\"]').clientWidth"
    )
    narrow = page.evaluate("document.querySelector('[data-chart=\"calls\"] canvas').width")
    assert narrow < wide, (narrow, wide)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()

"""Single sign-on end to end: a real OpenID Connect provider (django-oidc-provider in a
Django process of its own, tests/e2e/oidc_op/, RSA-signed ID tokens, a confidential
client, consent asked at every sign-in) and real Switchyard servers (uvicorn,
PostgreSQL, Redis) pointed at it, driven by headless Chromium.

Pat signs in with "Sign in with Acme ID", at the provider, consents, and lands on the
dashboard signed in; the ``groups`` claim maps to an operator role in payments (the
circuit page offers Force there) and a viewer role in search (no Force there); an
unknown group is ignored. Pat's groups change at the provider; after signing out and in
again the payments role is gone. A callback with a state this browser did not start is
refused. A server with SWITCHYARD_LOCAL_LOGIN=0 has no password form and refuses a
password POST (403). No page violates the Content-Security-Policy.
Screenshots: artifacts/screenshots/sso-*.png."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from controlplane.circuits.models import AuditEvent, Circuit, Membership, Service, Team
from tests.dashboard.browser import CHROMIUM, screenshot_dir
from tests.e2e.conftest import ROOT, ControlPlaneProcess, free_port, server_env
from tests.e2e.oidc_op.persona import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME
from tests.e2e.test_csp_e2e import RECORD_VIOLATIONS

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("oidc_provider")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

PROVIDER = "Acme ID"
TEAM_MAP = {
    "payments-oncall": {"payments": "operator"},
    "everyone": {"search": "viewer"},
}


class Provider:
    """The provider: its SQLite file, its setup commands, its uvicorn process."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.env = dict(
            os.environ,
            OP_DB=str(tmp / "provider.sqlite3"),
            OP_SITE_URL=f"http://127.0.0.1:{self.port}",
            PYTHONPATH=str(ROOT),
        )
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.server = ControlPlaneProcess(
            self.env, port=self.port, app=["tests.e2e.oidc_op.asgi:application"]
        )

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/openid"

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "tests.e2e.oidc_op.manage_op", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def switchyard_env(self, **extra: str) -> dict[str, str]:
        return server_env(
            SWITCHYARD_OIDC_ISSUER=self.issuer,
            SWITCHYARD_OIDC_AUTHORIZATION_ENDPOINT=f"{self.issuer}/authorize",
            SWITCHYARD_OIDC_TOKEN_ENDPOINT=f"{self.issuer}/token",
            SWITCHYARD_OIDC_USERINFO_ENDPOINT=f"{self.issuer}/userinfo",
            SWITCHYARD_OIDC_JWKS_ENDPOINT=f"{self.issuer}/jwks",
            SWITCHYARD_OIDC_END_SESSION_ENDPOINT=f"{self.issuer}/end-session",
            SWITCHYARD_OIDC_CLIENT_ID=CLIENT_ID,
            SWITCHYARD_OIDC_CLIENT_SECRET=CLIENT_SECRET,
            SWITCHYARD_OIDC_SCOPES="openid email profile groups",
            SWITCHYARD_OIDC_PROVIDER_NAME=PROVIDER,
            SWITCHYARD_OIDC_TEAM_MAP=json.dumps(TEAM_MAP),
            **extra,
        )


@pytest.fixture
def sso(tmp_path: Path, transactional_db: None) -> Iterator[dict[str, Any]]:
    """The provider, a Switchyard with single sign-on and password sign-in, and one with
    single sign-on only; both callbacks registered at the provider."""
    provider = Provider(tmp_path)
    ports = [free_port(), free_port()]
    provider.manage("setup", *[f"http://127.0.0.1:{p}/oidc/callback/" for p in ports])
    provider.manage("groups", "payments-oncall,everyone,unknown-group")
    provider.server.start()
    both = ControlPlaneProcess(provider.switchyard_env(), port=ports[0])
    sso_only = ControlPlaneProcess(
        provider.switchyard_env(SWITCHYARD_LOCAL_LOGIN="0"), port=ports[1]
    )
    try:
        both.start()
        sso_only.start()
        yield {"provider": provider, "both": both, "sso_only": sso_only}
    finally:
        for server in (both, sso_only, provider.server):
            server.stop()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"sso-{name}.png"), full_page=True)


def sign_in_at_provider(page: Any, base: str, *, first: bool, name: str) -> None:
    """From Switchyard's sign-in page: the button, the provider's form (the first time),
    the consent, back on the overview signed in."""
    page.goto(f"{base}/login/")
    page.get_by_role("link", name=f"Sign in with {PROVIDER}").click()
    if first:
        page.wait_for_selector("text=Acme username")
        shot(page, f"{name}-provider-login")
        page.fill('input[name="username"]', USERNAME)
        page.fill('input[name="password"]', PASSWORD)
        page.click("text=Sign in to Acme ID")
    page.wait_for_selector("text=Request for Permission")
    shot(page, f"{name}-provider-consent")
    page.click('input[name="allow"]')
    page.wait_for_url(f"{base}/")
    page.wait_for_selector(f".who:text-is('{USERNAME}')")


def force_buttons(page: Any, base: str, circuit: Circuit) -> int:
    page.goto(f"{base}/circuits/{circuit.pk}/")
    return int(page.locator("button[value='forced_open']").count())


def post_password(base: str) -> tuple[int, str]:
    """A password sign-in POST with a valid CSRF cookie and token."""
    secret = "a" * 32
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    form = {"username": "otto", "password": "otto-pw-123!", "csrfmiddlewaretoken": secret}
    body = urlencode(form)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={secret}",
    }
    try:
        conn.request("POST", "/login/", body, headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_sign_in_with_a_real_provider_maps_groups_to_teams_and_follows_their_changes(
    sso: dict[str, Any], browser: Any
) -> None:
    provider, base = sso["provider"], sso["both"].url
    payments = Team.objects.create(name="Payments", slug="payments")
    search = Team.objects.create(name="Search", slug="search")
    pay = Circuit.objects.create(
        service=Service.objects.create(name="checkout", team=payments), name="charge"
    )
    find = Circuit.objects.create(
        service=Service.objects.create(name="catalog", team=search), name="query"
    )
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.goto(f"{base}/login/")
    assert page.locator('input[name="password"]').count() == 1
    shot(page, "login-both")
    assert page.evaluate("window.__csp") == []

    sign_in_at_provider(page, base, first=True, name="first")
    shot(page, "signed-in-overview")
    assert page.evaluate("window.__csp") == []
    memberships = {
        (m.user.username, m.team.slug, m.role, m.source)
        for m in Membership.objects.select_related("user", "team")
    }
    # The unknown group granted nothing.
    assert memberships == {
        (USERNAME, "payments", "operator", "sso"),
        (USERNAME, "search", "viewer", "sso"),
    }
    assert force_buttons(page, base, pay) == 1
    shot(page, "payments-circuit-operator")
    assert force_buttons(page, base, find) == 0
    shot(page, "search-circuit-viewer")
    audit = AuditEvent.objects.filter(action="membership.set").order_by("team")
    assert [(e.team, e.actor_name) for e in audit] == [("Payments", "system"), ("Search", "system")]

    # Pat leaves the payments on-call at the provider; signs out, signs in again.
    provider.manage("groups", "everyone")
    page.goto(f"{base}/")
    page.click("text=Log out")
    # Signed out here, then at the provider (RP-initiated logout), back to the sign-in.
    page.wait_for_url(f"{base}/login/")
    assert page.locator(".who").count() == 0
    sign_in_at_provider(page, base, first=True, name="second")
    assert force_buttons(page, base, pay) == 0
    assert force_buttons(page, base, find) == 0
    shot(page, "payments-circuit-after-claim-change")
    assert set(Membership.objects.values_list("team__slug", "role")) == {("search", "viewer")}
    removed = AuditEvent.objects.get(action="membership.remove")
    assert (removed.team, removed.before["role"]) == ("Payments", "operator")

    # A callback with a state this browser did not start: refused, nobody signed in.
    page.goto(f"{base}/")
    page.click("text=Log out")
    page.wait_for_url("**/login/**")
    page.get_by_role("link", name=f"Sign in with {PROVIDER}").click()
    page.wait_for_selector("text=Acme username")  # signed out at the provider too
    answer = page.goto(f"{base}/oidc/callback/?code=forged&state=tampered")
    assert answer is not None and answer.status == 400
    assert "could not be verified" in page.inner_text("[role=alert]")
    shot(page, "tampered-state")
    page.goto(f"{base}/")
    page.wait_for_url("**/login/**")
    context.close()


def test_with_local_login_off_only_single_sign_on_is_offered(
    sso: dict[str, Any], browser: Any
) -> None:
    base = sso["sso_only"].url
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.goto(f"{base}/login/")
    assert page.locator('input[name="password"]').count() == 0
    assert page.locator("main form").count() == 0
    assert page.get_by_role("link", name=f"Sign in with {PROVIDER}").count() == 1
    assert page.evaluate("window.__csp") == []
    shot(page, "login-sso-only")
    status, text = post_password(base)
    assert status == 403
    assert "Signing in with a password is turned off" in text
    # Single sign-on still works there (pat's "everyone" makes them a viewer of search).
    Team.objects.create(name="Search", slug="search")
    sign_in_at_provider(page, base, first=True, name="sso-only")
    context.close()

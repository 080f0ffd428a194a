"""The security headers of every page (docs/operations.md "Security headers"): the
Content-Security-Policy exactly as configured, the other headers a security review
expects, no inline script, style or handler in any template, script or rendered page
(the policy would block them), and `check --deploy` clean with the production settings.
The same pages in a real browser, with the policy enforced: tests/e2e/test_csp_e2e.py."""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.e2e.test_a11y_e2e import PAGES, seed

ROOT = Path(__file__).resolve().parents[2]

# The policy every page carries (directive -> sources, in any order of directives).
POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# The API docs page alone draws Swagger UI's icons from data: URLs.
DOCS_POLICY = {**POLICY, "img-src": ["'self'", "data:"]}
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": (
        "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), "
        "fullscreen=(), geolocation=(), gyroscope=(), hid=(), idle-detection=(), "
        "magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), "
        "publickey-credentials-get=(), screen-wake-lock=(), serial=(), usb=(), "
        "xr-spatial-tracking=()"
    ),
}

# What the policy blocks in markup: an inline <script> (a JSON data block is not run),
# a <style> block, a style attribute, an on...= handler, a javascript: URL.
INLINE = {
    "inline script": re.compile(
        r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I
    ),
    "style block": re.compile(r"<style\b", re.I),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "event handler": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}
# What a script may not do under the policy: set a style attribute (the CSSOM,
# element.style.x = ..., is allowed), write markup with one, or evaluate strings.
SCRIPT_INLINE = {
    "style attribute": re.compile(r"setAttribute\(\s*[\"']style[\"']|style=", re.I),
    "eval": re.compile(r"\beval\(|new Function\(|set(?:Timeout|Interval)\(\s*[\"']"),
}


def parse_policy(header: str) -> dict[str, list[str]]:
    directives = [d.split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


TEMPLATE_COMMENT = re.compile(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", re.S)


def inline_markup(html: str) -> list[str]:
    html = TEMPLATE_COMMENT.sub("", html)
    return [
        f"{name}: {match.group(0)[:120]}"
        for name, pattern in INLINE.items()
        for match in pattern.finditer(html)
    ]


def assert_headers(response: Any, policy: dict[str, list[str]] = POLICY) -> None:
    assert "Content-Security-Policy-Report-Only" not in response
    assert parse_policy(response["Content-Security-Policy"]) == policy
    assert {name: response.get(name) for name in HEADERS} == HEADERS
    # Plain HTTP (SWITCHYARD_SECURE=0): no HSTS (tests/circuits/test_project.py: on with it).
    assert "Strict-Transport-Security" not in response


# --- the templates, the scripts -----------------------------------------------------------


def template_files() -> list[Path]:
    found = sorted((ROOT / "dashboard" / "templates").rglob("*.html"))
    found += sorted((ROOT / "templates").rglob("*.html"))
    assert len(found) > 15
    return found


def test_no_template_has_an_inline_script_style_or_handler() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in template_files()
        if (found := inline_markup(path.read_text()))
    }
    assert offenders == {}


def test_no_python_module_writes_inline_markup() -> None:
    offenders = {}
    for package in ("controlplane", "dashboard"):
        for path in sorted((ROOT / package).rglob("*.py")):
            strings = [
                node.value
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
            ]
            if found := inline_markup("\n".join(strings)):
                offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


def test_no_dashboard_script_sets_a_style_attribute_or_evaluates_strings() -> None:
    scripts = sorted((ROOT / "dashboard" / "static" / "dashboard").glob("*.js"))
    assert len(scripts) >= 5
    offenders = {
        path.name: [
            f"{name}: {m.group(0)}" for name, p in SCRIPT_INLINE.items() for m in p.finditer(text)
        ]
        for path in scripts
        if any(p.search(text := path.read_text()) for p in SCRIPT_INLINE.values())
    }
    assert offenders == {}


def test_the_scan_finds_what_the_policy_blocks() -> None:
    html = (
        '<script>alert(1)</script><script src="/a.js"></script>'
        '<script id="d" type="application/json">{}</script><style>p{}</style>'
        '<p style="color: red"><button onclick="go()">x</button><a href="javascript:go()">y</a>'
    )
    assert [line.split(":")[0] for line in inline_markup(html)] == [
        "inline script",
        "style block",
        "style attribute",
        "event handler",
        "javascript",
    ]


# --- the pages -----------------------------------------------------------------------------


class _TestClientServer:
    """The a11y test's seed posts agent syncs to a server; here, to the test client."""

    def __init__(self) -> None:
        self.client = Client()

    def request(self, method: str, path: str, body: Any, token: str) -> tuple[int, Any]:
        response = self.client.generic(
            method,
            path,
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        return response.status_code, response.json()


# The pages the a11y test reaches by submitting a form, as the form posts them.
FORM_POSTS: dict[str, tuple[str, dict[str, str]]] = {
    "confirm": (
        "/circuits/{inventory}/override",
        {"action": "forced_open", "reason": "provider outage", "expires_in_minutes": "30"},
    ),
    "circuit-error": ("/circuits/{inventory}/override", {"action": "forced_open"}),
    "config-confirm": (
        "/circuits/{inventory}/config",
        {"failure_threshold": "8", "reason": "fewer false trips"},
    ),
    "config-error": ("/circuits/{inventory}/config", {"failure_threshold": "0"}),
    "silence-error": ("/alerts/silence", {"alert": "{alert}", "match": "circuit"}),
    "silence-confirm": (
        "/alerts/silence",
        {
            "alert": "{alert}",
            "match": "circuit",
            "reason": "known provider outage",
            "expires_in_minutes": "45",
        },
    ),
    "login-error": ("/login/", {"username": "nobody", "password": "not the password"}),
    "tokens-error": ("/tokens/", {"scope": "admin", "team": "", "expires_in_days": "30"}),
    "tokens-created": ("/tokens/", {"scope": "read", "team": "", "expires_in_days": "7"}),
    "rollout-error": ("/circuits/{email}/rollouts/start", {"percent": "100"}),
}


def config_form(client: Client, circuit_id: int) -> dict[str, str]:
    """The config form's inputs as the circuit page fills them in."""
    html = client.get(f"/circuits/{circuit_id}/").content.decode()
    form = html[html.index('class="config-form"') :]
    form = form[: form.index("</form>")]
    values = dict(re.findall(r'<input[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"', form))
    for name, options in re.findall(r'<select[^>]*\bname="([^"]+)"[^>]*>(.*?)</select>', form):
        values[name] = re.search(r'<option value="([^"]*)" selected', options).group(1)
    assert "expected_version" in values and "failure_threshold" in values, values
    return values


@pytest.fixture
def seeded(operator: User, sync_body: Any) -> dict[str, Any]:
    ids, _ = seed(_TestClientServer(), sync_body, operator)  # type: ignore[arg-type]
    return ids


@pytest.mark.django_db
@pytest.mark.parametrize("spec", PAGES, ids=[p.name for p in PAGES])
def test_every_dashboard_page_carries_the_policy_and_the_headers(
    spec: Any, seeded: dict[str, Any], operator: User
) -> None:
    client = Client()
    if spec.logged_in:
        client.force_login(operator)
    if spec.submit is None:
        response = client.get(spec.path.format(**seeded))
    else:
        path, data = FORM_POSTS[spec.name]
        form = config_form(client, seeded["inventory"]) if path.endswith("config") else {}
        form.update({key: value.format(**seeded) for key, value in data.items()})
        response = client.post(path.format(**seeded), form)
    # The page itself (a confirm page, a form), or the form again with its errors.
    expected = 400 if spec.name.endswith("-error") and spec.name != "login-error" else 200
    assert response.status_code == expected, (spec.name, response.status_code)
    assert response["Content-Type"].startswith("text/html")
    assert_headers(response)
    assert inline_markup(response.content.decode()) == [], spec.name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/api/v1/circuits/", "text/html"),  # the browsable API, with its filter form
        ("/api/v1/services/", "text/html"),
        ("/api/v1/circuits/", "application/json"),
        ("/admin/", "text/html"),
        ("/admin/auth/user/", "text/html"),
        ("/admin/auth/user/add/", "text/html"),
        ("/admin/circuits/circuit/", "text/html"),
        ("/no/such/page/", "text/html"),
    ],
)
def test_the_api_the_admin_and_errors_carry_them_too(
    path: str, accept: str, admin_user: User
) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.get(path, HTTP_ACCEPT=accept)
    assert response.status_code in (200, 404), (path, response.status_code)
    assert_headers(response)
    html = response.content.decode()
    assert inline_markup(html) == [], path
    if path == "/api/v1/circuits/" and accept == "text/html":
        # DRF places the Filters button with a style attribute; here, with a class.
        assert 'class="btn btn-default request-form-aside"' in html


@pytest.mark.django_db
def test_the_api_docs_page_loads_its_script_from_a_file(operator: User) -> None:
    client = Client()
    client.force_login(operator)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert_headers(page, DOCS_POLICY)
    html = page.content.decode()
    assert inline_markup(html) == []
    assert '<script src="/api/docs/?script="></script>' in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"] == "application/javascript"
    assert b"SwaggerUIBundle(" in script.content


def test_report_only_sends_the_same_policy_as_a_report() -> None:
    code = (
        "import json, django; django.setup(); from django.test import Client; "
        "r = Client().get('/login/'); "
        "print(json.dumps([r.get('Content-Security-Policy'), "
        "r.get('Content-Security-Policy-Report-Only')]))"
    )
    result = _manage_env_run(
        ["-c", code],
        SWITCHYARD_CSP_REPORT_ONLY="1",
        SWITCHYARD_CSP_SCRIPT_SOURCES="https://proxy.example.com,'sha256-abc='",
        SWITCHYARD_CSP_REPORT_URI="/csp-reports",
        DEBUG="1",
    )
    assert result.returncode == 0, result.stderr
    enforced, reported = json.loads(result.stdout.strip().splitlines()[-1])
    assert enforced is None
    assert parse_policy(reported) == {
        **POLICY,
        "script-src": ["'self'", "https://proxy.example.com", "'sha256-abc='"],
        "report-uri": ["/csp-reports"],
    }


def test_a_source_that_is_not_one_stops_the_start() -> None:
    result = _manage_env_run(
        ["-c", "import controlplane.settings"],
        SWITCHYARD_CSP_STYLE_SOURCES="'self'; script-src *",
        DEBUG="1",
    )
    assert result.returncode != 0
    assert "SWITCHYARD_CSP_STYLE_SOURCES items must be CSP sources" in result.stderr


# --- check --deploy --------------------------------------------------------------------------


def _manage_env_run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_CSP", "DEBUG"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "controlplane.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_settings() -> None:
    # docker-compose.yml's web service: DEBUG=0, a SECRET_KEY, ALLOWED_HOSTS; behind TLS
    # (SWITCHYARD_SECURE=1) as docs/operations.md asks of a deployment.
    result = _manage_env_run(
        ["manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        DEBUG="0",
        SWITCHYARD_SECURE="1",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="switchyard.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (1 silenced).", (
        result.stdout + result.stderr
    )


def test_check_deploy_names_what_plain_http_leaves_out() -> None:
    result = _manage_env_run(
        ["manage.py", "check", "--deploy"],
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="switchyard.example.com",
    )
    found = set(re.findall(r"security\.W\d+", result.stderr + result.stdout))
    # HSTS, the HTTPS redirect and the two secure cookies: what SWITCHYARD_SECURE turns on.
    assert found == {"security.W004", "security.W008", "security.W012", "security.W016"}


SSO_ENV = {
    "SWITCHYARD_OIDC_ISSUER": "https://id.example.com/realms/acme",
    "SWITCHYARD_OIDC_AUTHORIZATION_ENDPOINT": "https://id.example.com/realms/acme/auth",
    "SWITCHYARD_OIDC_TOKEN_ENDPOINT": "https://id.example.com/realms/acme/token",
    "SWITCHYARD_OIDC_USERINFO_ENDPOINT": "https://id.example.com/realms/acme/userinfo",
    "SWITCHYARD_OIDC_JWKS_ENDPOINT": "https://id.example.com/realms/acme/certs",
    "SWITCHYARD_OIDC_CLIENT_ID": "switchyard",
    "SWITCHYARD_OIDC_CLIENT_SECRET": "s3cret-of-the-client",
    "SWITCHYARD_OIDC_TEAM_MAP": '{"payments-oncall": {"payments": "operator"}}',
}


def test_check_deploy_is_clean_with_single_sign_on_only() -> None:
    result = _manage_env_run(
        ["manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        DEBUG="0",
        SWITCHYARD_SECURE="1",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="switchyard.example.com",
        SWITCHYARD_LOCAL_LOGIN="0",
        **SSO_ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SWITCHYARD_OIDC_CLIENT_SECRET": "", "SWITCHYARD_OIDC_JWKS_ENDPOINT": ""},
            "SWITCHYARD_OIDC_JWKS_ENDPOINT, SWITCHYARD_OIDC_CLIENT_SECRET must be set too",
        ),
        (
            {"SWITCHYARD_OIDC_TOKEN_ENDPOINT": "http://id.example.com/token"},
            "SWITCHYARD_OIDC_TOKEN_ENDPOINT must be an https:// URL",
        ),
        (
            {"SWITCHYARD_OIDC_TEAM_MAP": '{"oncall": {"payments": "owner"}}'},
            "SWITCHYARD_OIDC_TEAM_MAP['oncall'] must map team slugs to one of viewer, operator",
        ),
        ({"SWITCHYARD_OIDC_ROLE_MAP": "[1]"}, "SWITCHYARD_OIDC_ROLE_MAP must be a JSON object"),
        ({"SWITCHYARD_OIDC_SCOPES": "email"}, "SWITCHYARD_OIDC_SCOPES must include openid"),
        (
            {"SWITCHYARD_OIDC_ISSUER": "", "SWITCHYARD_LOCAL_LOGIN": "0"},
            "SWITCHYARD_LOCAL_LOGIN=0 needs single sign-on",
        ),
    ],
)
def test_a_single_sign_on_mistake_stops_the_start_naming_it(
    env: dict[str, str], message: str
) -> None:
    result = _manage_env_run(["manage.py", "check"], DEBUG="1", **{**SSO_ENV, **env})
    assert result.returncode != 0
    assert message in result.stderr
    assert "s3cret-of-the-client" not in result.stderr + result.stdout

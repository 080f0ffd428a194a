"""The sign-in page and single sign-on's routes, in the test client: the password form
while SWITCHYARD_LOCAL_LOGIN is on, refused (403) when it is off; the start of the code
flow (state, nonce, PKCE); an answer with a state this browser did not start refused.
The whole flow against a real provider: tests/e2e/test_sso_e2e.py."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

OIDC = {
    "SWITCHYARD_OIDC_ENABLED": True,
    "SWITCHYARD_OIDC_ISSUER": "https://id.example.com",
    "SWITCHYARD_OIDC_PROVIDER_NAME": "Acme ID",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://id.example.com/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": "https://id.example.com/token",
    "OIDC_OP_USER_ENDPOINT": "https://id.example.com/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "https://id.example.com/jwks",
    "OIDC_RP_CLIENT_ID": "switchyard",
    "OIDC_RP_CLIENT_SECRET": "not-a-real-secret",
}
BACKENDS = ["axes.backends.AxesStandaloneBackend", "controlplane.circuits.sso.OIDCBackend"]


def test_by_default_the_page_has_the_password_form_and_no_sso(db: None) -> None:
    page = Client().get("/login/").content.decode()
    assert 'name="password"' in page and "Sign in with" not in page


@override_settings(**OIDC)
def test_with_sso_the_page_offers_both(db: None) -> None:
    page = Client().get("/login/?next=/services/").content.decode()
    assert 'name="password"' in page
    assert 'href="/oidc/authenticate/?next=/services/">Sign in with Acme ID</a>' in page


@override_settings(**OIDC, SWITCHYARD_LOCAL_LOGIN=False, AUTHENTICATION_BACKENDS=BACKENDS)
def test_with_local_login_off_the_form_is_gone_and_a_password_is_refused(
    operator: User,
) -> None:
    client = Client()
    page = client.get("/login/").content.decode()
    assert 'name="password"' not in page and "<form" not in page.split("<main", 1)[1]
    assert "Sign in with Acme ID" in page
    refused = client.post("/login/", {"username": "otto", "password": "otto-pw-123!"})
    assert refused.status_code == 403
    assert "Signing in with a password is turned off" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # The admin's sign-in has no password backend either.
    admin = client.post("/admin/login/", {"username": "otto", "password": "otto-pw-123!"})
    assert admin.status_code == 200 and "_auth_user_id" not in client.session


def test_the_sso_routes_are_404_while_sso_is_not_set_up(db: None) -> None:
    assert Client().get("/oidc/authenticate/").status_code == 404
    assert Client().get("/oidc/callback/?code=a&state=b").status_code == 404


@override_settings(**OIDC)
def test_the_start_sends_state_nonce_and_a_pkce_challenge(db: None) -> None:
    client = Client()
    response = client.get("/oidc/authenticate/?next=/services/")
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://id.example.com/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["response_type"] == "code" and query["client_id"] == "switchyard"
    assert query["redirect_uri"] == "http://testserver/oidc/callback/"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    kept = client.session["oidc_states"][query["state"]]
    assert kept["nonce"] == query["nonce"] and len(kept["code_verifier"]) >= 43
    assert "not-a-real-secret" not in response["Location"]


@override_settings(**OIDC)
def test_an_answer_with_a_state_this_browser_did_not_start_is_refused(db: None) -> None:
    client = Client()
    client.get("/oidc/authenticate/")
    refused = client.get("/oidc/callback/?code=stolen&state=made-up")
    assert refused.status_code == 400
    assert "could not be verified" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # No sign-in started at all: back to the sign-in page, with the failure said.
    fresh = Client()
    response = fresh.get("/oidc/callback/?code=stolen&state=made-up")
    assert response.status_code == 302 and response["Location"] == "/login/?sso=failed"
    page = fresh.get(response["Location"]).content.decode()
    assert "Signing in with Acme ID did not succeed" in page

"""The API tokens page: a user's own tokens, a form within their rights (CSRF), revoke."""

from __future__ import annotations

import re
from datetime import timedelta

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.circuits.auth import create_api_token
from controlplane.circuits.models import APIToken, AuditEvent


def _signed_in(user: User, **kwargs: bool) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_the_page_lists_only_your_tokens_with_expiry_and_last_use(
    viewer: User, admin: User
) -> None:
    mine, _ = create_api_token(viewer, scope="read", days=7, label="nightly report")
    theirs, _ = create_api_token(admin, scope="admin", label="admin script")
    page = _signed_in(viewer).get("/tokens/").content.decode()
    assert f'data-token="{mine.prefix}"' in page and "nightly report" in page
    assert theirs.prefix not in page and "admin script" not in page
    assert 'data-last-used=""' in page  # never used yet
    assert '<a href="/tokens/" aria-current="page">API tokens</a>' in page


def test_the_expires_column_shows_the_true_time_left(viewer: User) -> None:
    """A 7-day token made a moment ago expires "in 7 d" (not "in 6 d"); one with six and
    a half days left says so."""
    week, _ = create_api_token(viewer, scope="read", days=7, label="week")
    half, _ = create_api_token(
        viewer, scope="read", days=7, label="half", now=timezone.now() - timedelta(hours=12)
    )
    page = _signed_in(viewer).get("/tokens/").content.decode()
    expires = re.findall(
        r'data-token="([\w-]+)".*?data-label="Expires"><time [^>]*>([^<]*)</time>', page
    )
    assert dict(expires) == {week.prefix: "in 7 d", half.prefix: "in 6 d 12 h"}


def test_the_form_refuses_more_than_your_rights_and_creates_within_them(viewer: User) -> None:
    client = _signed_in(viewer)
    refused = client.post("/tokens/", {"scope": "operate", "expires_in_days": "30"})
    assert refused.status_code == 400
    assert "more than your rights" in refused.content.decode()
    too_long = client.post("/tokens/", {"scope": "read", "expires_in_days": "366"})
    assert too_long.status_code == 400 and 'data-error-for="expires_in_days"' in (
        too_long.content.decode()
    )
    assert not APIToken.objects.exists()
    created = client.post("/tokens/", {"scope": "read", "expires_in_days": "7"})
    assert created.status_code == 200
    token = APIToken.objects.get()
    assert token.scope == "read" and token.user == viewer
    assert 'id="token-secret"' in created.content.decode()
    assert "syu_" in created.content.decode()


def test_the_form_needs_the_csrf_token(viewer: User) -> None:
    client = _signed_in(viewer, enforce_csrf_checks=True)
    assert client.post("/tokens/", {"scope": "read", "expires_in_days": "7"}).status_code == 403
    assert not APIToken.objects.exists()


def test_revoke_is_your_own_tokens_only_and_audited(viewer: User, admin: User) -> None:
    mine, _ = create_api_token(viewer, scope="read")
    theirs, _ = create_api_token(admin, scope="admin")
    client = _signed_in(viewer)
    assert client.post(f"/tokens/{theirs.pk}/revoke").status_code == 404
    assert client.post(f"/tokens/{mine.pk}/revoke").status_code == 302
    assert APIToken.objects.get(pk=mine.pk).revoked_at is not None
    assert APIToken.objects.get(pk=theirs.pk).revoked_at is None
    assert AuditEvent.objects.filter(action="api_token.revoke", actor_name="vera").count() == 1


def test_the_page_needs_a_signed_in_user(db: None) -> None:
    response = Client().get("/tokens/")
    assert response.status_code == 302 and "/login/" in response["Location"]

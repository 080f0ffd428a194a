"""Single sign-on's decisions (controlplane/circuits/sso.py): which user a provider's claims
sign in as, what the claim-to-team mapping grants, and how each sign-in syncs the
memberships and global roles single sign-on made, audited, leaving a person's alone.
The whole flow against a real provider: tests/e2e/test_sso_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import SuspiciousOperation
from django.test import override_settings
from rest_framework.test import APIClient

from controlplane.circuits import access
from controlplane.circuits.models import AuditEvent, Membership, SSOIdentity, Team
from controlplane.circuits.operations import set_membership
from controlplane.circuits.sso import Grants, grants_from_claims, match_user, sign_in, sync_grants

pytestmark = pytest.mark.django_db

ISSUER = "https://id.example.com/realms/acme"
TEAM_MAP = {
    "payments-oncall": {"payments": "operator"},
    "payments-leads": {"payments": "admin", "search": "viewer"},
    "everyone": {"payments": "viewer", "search": "viewer"},
    "ghosts": {"no-such-team": "admin"},
}
ROLE_MAP = {"sre": "viewer", "switchyard-admins": "admin"}


def _claims(sub: str = "s-1", **extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "sub": sub, **extra}


def test_mapped_values_grant_their_roles_the_highest_per_team_unknown_ignored() -> None:
    claims = _claims(groups=["everyone", "payments-oncall", "unknown-group", 42])
    grants = grants_from_claims(claims, claim="groups", team_map=TEAM_MAP, role_map=ROLE_MAP)
    assert grants == Grants(teams={"payments": "operator", "search": "viewer"})
    claims = _claims(groups=["payments-leads", "payments-oncall", "sre"])
    grants = grants_from_claims(claims, claim="groups", team_map=TEAM_MAP, role_map=ROLE_MAP)
    assert grants.teams == {"payments": "admin", "search": "viewer"}
    assert grants.global_roles == {"viewer"}
    # One string (Google's hd) is one value; a missing claim grants nothing.
    hd = grants_from_claims(
        _claims(hd="acme.com"), claim="hd", team_map={"acme.com": {"search": "viewer"}}, role_map={}
    )
    assert hd.teams == {"search": "viewer"}
    assert grants_from_claims(_claims(), claim="groups", team_map=TEAM_MAP, role_map={}) == Grants()


def test_a_user_is_found_by_subject_then_by_verified_email_never_by_an_unverified_one() -> None:
    vera = User.objects.create_user("vera", email="Vera@acme.com")
    # Unverified email: a new user, not vera.
    unverified = match_user(
        _claims("s-1", email="vera@acme.com", email_verified=False, preferred_username="vera"),
        issuer=ISSUER,
        create=True,
    )
    assert unverified is not None and unverified.pk != vera.pk
    assert unverified.username.startswith("vera-") and unverified.email == ""
    # Verified email: vera, linked to the subject from now on.
    claims = _claims("s-2", email="vera@acme.com", email_verified=True, given_name="Vera")
    assert match_user(claims, issuer=ISSUER, create=True) == vera
    assert SSOIdentity.objects.get(subject="s-2").user == vera
    # The subject decides from now on, whatever the email says.
    later = match_user(_claims("s-2", email="other@acme.com"), issuer=ISSUER, create=False)
    assert later == vera
    vera.refresh_from_db()
    # Names and a verified email follow the provider; an unverified one changes nothing.
    assert (vera.first_name, vera.email) == ("Vera", "vera@acme.com")
    # A user linked to one subject is never linked to another by email.
    again = match_user(
        _claims("s-3", email="vera@acme.com", email_verified=True), issuer=ISSUER, create=False
    )
    assert again is None


def test_two_users_with_the_verified_email_refuse_rather_than_guess() -> None:
    User.objects.create_user("a", email="x@acme.com")
    User.objects.create_user("b", email="X@acme.com")
    claims = _claims("s-9", email="x@acme.com", email_verified=True)
    with pytest.raises(SuspiciousOperation):
        match_user(claims, issuer=ISSUER, create=True)
    assert not SSOIdentity.objects.exists()


def test_no_user_is_created_when_creating_is_off() -> None:
    assert match_user(_claims("s-1", email="n@acme.com"), issuer=ISSUER, create=False) is None
    assert not User.objects.filter(email="n@acme.com").exists()


def _roles(user: User) -> dict[str, tuple[str, str]]:
    return {
        m.team.slug: (m.role, m.source)
        for m in Membership.objects.filter(user=user).select_related("team")
    }


def _sign_in(groups: list[str], sub: str = "s-1") -> User:
    with override_settings(
        SWITCHYARD_OIDC_ISSUER=ISSUER,
        SWITCHYARD_OIDC_TEAM_MAP=TEAM_MAP,
        SWITCHYARD_OIDC_ROLE_MAP=ROLE_MAP,
        SWITCHYARD_OIDC_PROVIDER_NAME="Acme ID",
    ):
        user = sign_in(_claims(sub, groups=groups, preferred_username="pat"))
    assert user is not None
    return user


def test_every_sign_in_syncs_the_sso_memberships_and_leaves_a_persons_alone(admin: User) -> None:
    payments = Team.objects.create(name="Payments", slug="payments")
    search = Team.objects.create(name="Search", slug="search")
    pat = _sign_in(["payments-oncall", "ghosts", "nobody-knows"])
    assert _roles(pat) == {"payments": ("operator", "sso")}
    events = AuditEvent.objects.filter(action="membership.set")
    assert [(e.team, e.actor_name, e.after) for e in events] == [
        ("Payments", "system", {"user": "pat", "role": "operator", "source": "sso"})
    ]
    assert "Acme ID" in events[0].reason and "payments-oncall" in events[0].reason
    # Promoted, and a second team.
    _sign_in(["payments-leads"])
    assert _roles(pat) == {"payments": ("admin", "sso"), "search": ("viewer", "sso")}
    # A person sets the search role: it is theirs from now on.
    set_membership(search, pat, "operator", user=admin)
    # The claim changed: payments goes, search (a person's) stays as the person set it.
    _sign_in(["everyone-else"])
    assert _roles(pat) == {"search": ("operator", "manual")}
    removed = AuditEvent.objects.get(action="membership.remove")
    assert (removed.team, removed.before["role"]) == ("Payments", "admin")
    assert payments.memberships.count() == 0
    # Nothing changed, nothing audited.
    count = AuditEvent.objects.count()
    _sign_in(["everyone-else"])
    assert AuditEvent.objects.count() == count
    _sign_in(["everyone-else", "payments-oncall"])
    assert AuditEvent.objects.count() == count + 1
    # The teams API says who keeps each membership.
    api = APIClient()
    api.force_authenticate(admin)
    body = api.get("/api/v1/teams/").json()
    teams = body["results"] if isinstance(body, dict) else body
    members = {t["slug"]: t["members"] for t in teams}
    assert members == {
        "payments": [{"user": "pat", "role": "operator", "source": "sso"}],
        "search": [{"user": "pat", "role": "operator", "source": "manual"}],
    }


def test_global_roles_single_sign_on_granted_are_taken_away_a_persons_are_not() -> None:
    pat = _sign_in(["switchyard-admins", "sre"])
    assert set(pat.groups.values_list("name", flat=True)) == {"admin", "viewer"}
    assert access.has_global(User.objects.get(pk=pat.pk), "circuits.override_circuit")
    # A person makes pat an operator: single sign-on never takes that away.
    pat.groups.add(Group.objects.get(name="operator"))
    _sign_in(["sre"])
    assert set(pat.groups.values_list("name", flat=True)) == {"operator", "viewer"}
    _sign_in([])
    assert set(pat.groups.values_list("name", flat=True)) == {"operator"}
    actions = list(
        AuditEvent.objects.filter(action__startswith="role.")
        .order_by("at", "id")
        .values_list("action", "target_repr")
    )
    assert actions == [
        ("role.grant", "pat"),
        ("role.grant", "pat"),
        ("role.revoke", "pat"),
        ("role.revoke", "pat"),
    ]


def test_sync_needs_the_identity_of_the_issuer() -> None:
    pat = User.objects.create_user("pat")
    with pytest.raises(SSOIdentity.DoesNotExist):
        sync_grants(pat, Grants(), issuer=ISSUER)


def _rsa() -> tuple[Any, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public.decode()


def test_the_id_token_is_checked_signature_issuer_audience_nonce_expiry() -> None:
    import time

    import jwt

    from controlplane.circuits.sso import OIDCBackend

    key, public = _rsa()
    other, _ = _rsa()
    now = int(time.time())
    good = {"iss": ISSUER, "aud": "switchyard", "sub": "s-1", "nonce": "n-1", "iat": now}
    good["exp"] = now + 600

    def token(signer: Any = key, alg: str = "RS256", **changes: Any) -> str:
        secret = signer if alg.startswith("RS") else "a-shared-secret-of-at-least-32-bytes"
        return jwt.encode({**good, **changes}, secret, algorithm=alg, headers={"kid": "k1"})

    with override_settings(
        SWITCHYARD_OIDC_ISSUER=ISSUER,
        OIDC_RP_CLIENT_ID="switchyard",
        OIDC_OP_TOKEN_ENDPOINT="https://id.example.com/token",
        OIDC_OP_USER_ENDPOINT="https://id.example.com/userinfo",
        OIDC_RP_IDP_SIGN_KEY=public,
    ):
        backend = OIDCBackend()
        assert backend.verify_token(token(), nonce="n-1")["sub"] == "s-1"
        assert backend.verify_token(token(aud=["x", "switchyard"], azp="switchyard"), nonce="n-1")
        refused = [
            token(signer=other),  # signed by another key
            token(alg="HS256"),  # not the algorithm asked for
            token(iss="https://evil.example.com"),
            token(aud="someone-else"),
            token(aud=["switchyard", "x"]),  # several audiences, azp missing
            token(nonce="replayed"),
            token(exp=now - 60),
        ]
        for bad in refused:
            with pytest.raises(SuspiciousOperation):
                backend.verify_token(bad, nonce="n-1")

"""Single sign-on with OpenID Connect (docs/sso.md): who a provider's answer is, and what
its claims grant.

mozilla-django-oidc runs the authorization code flow (PKCE, state, nonce) and checks the
ID token's signature against the provider's keys; :class:`OIDCBackend` adds the checks
it leaves out (issuer, audience, the userinfo's subject), then hands the claims to the
plain functions below:

* :func:`match_user`: the user an identity signs in as, decided in this order and
  nothing else: the user already linked to the provider's ``sub`` (issuer and subject,
  an :class:`SSOIdentity`); else the one user with that email address when the provider
  says the email is verified (``email_verified`` true) and that user is linked to no
  other subject of this provider; else a new user (SWITCHYARD_OIDC_CREATE_USERS). An
  unverified email never links to anybody; several users with the verified email refuse
  the sign-in rather than guess.
* :func:`grants_from_claims`: the team roles and global roles the mapped claim values
  give (unknown values ignored; the highest role per team).
* :func:`sync_grants`: at every sign-in, the memberships single sign-on made are added,
  changed and removed to match; memberships set by a person (``source=manual``) are
  never touched, and a person setting a role takes the membership over. The global
  roles it granted are kept on the identity, so that it takes away only those. Every
  change is an audit event (actor "system", the team named).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from controlplane.circuits import access
from controlplane.circuits.choices import AuditAction, MembershipSource, TeamRole
from controlplane.circuits.models import Membership, SSOIdentity, Team
from controlplane.core.audit import Target, record_audit

logger = logging.getLogger(__name__)

# Higher wins when several claim values grant one team (or several global roles).
ROLE_RANK = {TeamRole.VIEWER: 1, TeamRole.OPERATOR: 2, TeamRole.ADMIN: 3}
_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")
USERNAME_MAX_LENGTH = 150


@dataclass(frozen=True)
class Grants:
    """What one sign-in's claims give: a role per team slug, and global roles."""

    teams: dict[str, str] = field(default_factory=dict)
    global_roles: frozenset[str] = frozenset()


def claim_values(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The values of ``claim``: a list of strings, or one string (Google's ``hd``)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def grants_from_claims(
    claims: Mapping[str, Any],
    *,
    claim: str,
    team_map: Mapping[str, Mapping[str, str]],
    role_map: Mapping[str, str],
) -> Grants:
    """The team and global roles the values of ``claim`` are mapped to; values mapped to
    nothing are ignored, and the highest role wins where several grant one team."""
    teams: dict[str, str] = {}
    global_roles: set[str] = set()
    for value in claim_values(claims, claim):
        for slug, role in team_map.get(value, {}).items():
            if slug not in teams or ROLE_RANK[TeamRole(role)] > ROLE_RANK[TeamRole(teams[slug])]:
                teams[slug] = role
        if value in role_map:
            global_roles.add(role_map[value])
    return Grants(teams=teams, global_roles=frozenset(global_roles))


def _email_verified(claims: Mapping[str, Any]) -> bool:
    # Some providers send the boolean as a string.
    return claims.get("email_verified") in (True, "true")


def _new_username(claims: Mapping[str, Any], issuer: str, subject: str) -> str:
    base = str(claims.get("preferred_username") or claims.get("email") or subject)
    base = _USERNAME_UNSAFE.sub("_", base)[:USERNAME_MAX_LENGTH] or "sso"
    if not User.objects.filter(username=base).exists():
        return base
    digest = hashlib.sha256(f"{issuer} {subject}".encode()).hexdigest()[:8]
    return f"{base[: USERNAME_MAX_LENGTH - 9]}-{digest}"


def _linked_by_email(email: str, issuer: str, subject: str) -> User | None:
    """The one user with this (verified) email not yet linked to a subject of ``issuer``."""
    candidates = list(
        User.objects.filter(email__iexact=email).exclude(sso_identities__issuer=issuer)
    )
    if len(candidates) > 1:
        raise SuspiciousOperation(f"{len(candidates)} users have the email of subject {subject!r}")
    return candidates[0] if candidates else None


def match_user(
    claims: Mapping[str, Any], *, issuer: str, create: bool, now: datetime | None = None
) -> User | None:
    """The user these claims sign in as (see the module docstring), linked to their
    subject from now on; None when nobody matches and creating users is off."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise SuspiciousOperation("the provider's claims have no sub")
    now = now or timezone.now()
    claimed_email = claims.get("email")
    email = claimed_email if isinstance(claimed_email, str) else ""
    verified = bool(email) and _email_verified(claims)
    with transaction.atomic():
        identity = (
            SSOIdentity.objects.select_related("user")
            .select_for_update()
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is not None:
            user: User = identity.user
        else:
            linked = _linked_by_email(email, issuer, subject) if verified else None
            if linked is not None:
                user = linked
            elif not create:
                return None
            else:
                user = User.objects.create_user(
                    _new_username(claims, issuer, subject), email=email if verified else ""
                )
            try:
                with transaction.atomic():
                    identity = SSOIdentity.objects.create(user=user, issuer=issuer, subject=subject)
            except IntegrityError:
                raise SuspiciousOperation(
                    f"user {user.get_username()!r} is linked to another subject of {issuer}"
                ) from None
        # Names and a verified email follow the provider.
        changed = []
        for attr, claim in (("first_name", "given_name"), ("last_name", "family_name")):
            value = claims.get(claim)
            if isinstance(value, str) and getattr(user, attr) != value[:150]:
                setattr(user, attr, value[:150])
                changed.append(attr)
        if verified and user.email != email:
            user.email = email
            changed.append("email")
        if changed:
            user.save(update_fields=changed)
        identity.last_login_at = now
        identity.save(update_fields=["last_login_at"])
    return user


def _membership_wire(user: User, role: str) -> dict[str, str]:
    return {"user": user.get_username(), "role": role, "source": MembershipSource.SSO}


def sync_grants(
    user: User,
    grants: Grants,
    *,
    issuer: str,
    reason: str = "",
    now: datetime | None = None,
) -> None:
    """Make ``user``'s single sign-on memberships and global roles those of ``grants``
    (memberships and roles a person set stay as they are), auditing every change."""
    now = now or timezone.now()
    with transaction.atomic():
        identity = SSOIdentity.objects.select_for_update().get(user=user, issuer=issuer)
        teams = {t.slug: t for t in Team.objects.filter(slug__in=list(grants.teams))}
        for slug in sorted(set(grants.teams) - set(teams)):
            logger.warning("single sign-on grants a role in team %r, which does not exist", slug)
        current = {
            m.team_id: m
            for m in Membership.objects.select_for_update().select_related("team").filter(user=user)
        }
        wanted = {
            teams[slug].pk: (teams[slug], role)
            for slug, role in grants.teams.items()
            if slug in teams
        }
        for team_id, (team, role) in sorted(wanted.items()):
            old = current.get(team_id)
            if old is not None and (old.source != MembershipSource.SSO or old.role == role):
                continue
            if old is None:
                Membership.objects.create(
                    user=user, team=team, role=role, source=MembershipSource.SSO
                )
            else:
                Membership.objects.filter(pk=old.pk).update(role=role)
            record_audit(
                actor=None,
                action=AuditAction.MEMBERSHIP_SET,
                target=team,
                team=team.name,
                reason=reason,
                before=_membership_wire(user, old.role) if old else None,
                after=_membership_wire(user, role),
                now=now,
            )
        for team_id, old in sorted(current.items()):
            if old.source != MembershipSource.SSO or team_id in wanted:
                continue
            old.delete()
            record_audit(
                actor=None,
                action=AuditAction.MEMBERSHIP_REMOVE,
                target=old.team,
                team=old.team.name,
                reason=reason,
                before=_membership_wire(user, old.role),
                now=now,
            )
        identity.global_roles = sorted(_sync_global_roles(user, identity, grants, reason, now))
        identity.save(update_fields=["global_roles"])
    access.forget_roles(user)
    # Django keeps the permissions it read on the user object.
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        if hasattr(user, cache):
            delattr(user, cache)


def _sync_global_roles(
    user: User, identity: SSOIdentity, grants: Grants, reason: str, now: datetime
) -> set[str]:
    """Grant the claimed global roles the user lacks, take away those single sign-on
    granted before and no longer claims; the roles single sign-on holds now."""
    had = set(user.groups.filter(name__in=list(ROLE_RANK)).values_list("name", flat=True))
    held_by_sso = set(identity.global_roles) & had
    target = Target(type="user", id=str(user.pk), repr=user.get_username())
    for role in sorted(grants.global_roles - had):
        user.groups.add(Group.objects.get(name=role))
        held_by_sso.add(role)
        record_audit(
            actor=None,
            action=AuditAction.ROLE_GRANT,
            target=target,
            reason=reason,
            after={"role": role, "source": MembershipSource.SSO},
            now=now,
        )
    for role in sorted(held_by_sso - grants.global_roles):
        user.groups.remove(Group.objects.get(name=role))
        held_by_sso.discard(role)
        record_audit(
            actor=None,
            action=AuditAction.ROLE_REVOKE,
            target=target,
            reason=reason,
            before={"role": role, "source": MembershipSource.SSO},
            now=now,
        )
    return held_by_sso


def sign_in(claims: Mapping[str, Any], *, now: datetime | None = None) -> User | None:
    """The user ``claims`` sign in as, their grants synced (the settings' mapping)."""
    issuer = settings.SWITCHYARD_OIDC_ISSUER
    user = match_user(claims, issuer=issuer, create=settings.SWITCHYARD_OIDC_CREATE_USERS, now=now)
    if user is None:
        return None
    claim = settings.SWITCHYARD_OIDC_TEAMS_CLAIM
    grants = grants_from_claims(
        claims,
        claim=claim,
        team_map=settings.SWITCHYARD_OIDC_TEAM_MAP,
        role_map=settings.SWITCHYARD_OIDC_ROLE_MAP,
    )
    values = ", ".join(claim_values(claims, claim)) or "none"
    reason = f"single sign-on ({settings.SWITCHYARD_OIDC_PROVIDER_NAME}): {claim} {values}"
    sync_grants(user, grants, issuer=issuer, reason=reason[:1000], now=now)
    return user


def _audiences(payload: Mapping[str, Any]) -> Iterable[str]:
    aud = payload.get("aud")
    return [aud] if isinstance(aud, str) else list(aud or [])


class OIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with the ID token's issuer and audience checked,
    users matched by subject (:func:`match_user`) and grants synced (:func:`sync_grants`)."""

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = super().verify_token(token, **kwargs)
        except jwt.InvalidTokenError as exc:  # expired, not yet valid, malformed
            raise SuspiciousOperation(f"ID token refused: {exc}") from None
        if payload.get("iss", "").rstrip("/") != settings.SWITCHYARD_OIDC_ISSUER:
            raise SuspiciousOperation(f"ID token issuer {payload.get('iss')!r} is not ours")
        audiences = list(_audiences(payload))
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("ID token is not for this client (aud)")
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("ID token is not for this client (azp)")
        return payload

    def get_or_create_user(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> User | None:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("the userinfo's sub is not the ID token's")
        # The ID token's claims win over the userinfo's where both have one.
        return sign_in({**userinfo, **payload})

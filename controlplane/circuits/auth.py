"""Bearer tokens: agent tokens (sya_..., one service) and personal API tokens (syu_...).

A token is a prefix plus 32 random bytes (url-safe base64); only its sha256 is stored,
so a database leak reveals no usable token. sha256 (not a slow hash) is enough because
the secret has 256 bits of entropy, and it keeps the lookup a single indexed query.
"""

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.circuits.choices import TokenScope
from controlplane.circuits.models import AgentToken, APIToken, Service, Team

AGENT_TOKEN_PREFIX = "sya_"
API_TOKEN_PREFIX = "syu_"
# Longest token accepted: longer input is refused before hashing.
MAX_TOKEN_LENGTH = 200


def hash_token(raw_token: str) -> str:
    """The hex sha256 under which a token is stored."""
    return hashlib.sha256(raw_token.encode()).hexdigest()


def _new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def create_agent_token(
    service: Service, *, label: str = "", created_by: User | None = None
) -> tuple[AgentToken, str]:
    """Create an agent token for ``service``; returns the row and the raw token (shown once)."""
    raw = _new_secret(AGENT_TOKEN_PREFIX)
    token = AgentToken.objects.create(
        service=service,
        label=label,
        prefix=raw[:12],
        token_hash=hash_token(raw),
        created_by=created_by,
    )
    return token, raw


def max_token_days() -> int:
    """The longest lifetime of a personal API token (SWITCHYARD_API_TOKEN_MAX_DAYS)."""
    return int(settings.SWITCHYARD_API_TOKEN_MAX_DAYS)


def create_api_token(
    user: User,
    *,
    label: str = "",
    scope: str = TokenScope.ADMIN,
    team: Team | None = None,
    days: int | None = None,
    now: datetime | None = None,
) -> tuple[APIToken, str]:
    """Create a personal API token for ``user`` living ``days`` (default and at most
    SWITCHYARD_API_TOKEN_MAX_DAYS); returns the row and the raw token (shown once).

    The caller checks that ``scope`` and ``team`` are within the user's rights."""
    days = max_token_days() if days is None else days
    if not 1 <= days <= max_token_days():
        raise ValueError(f"days must be 1-{max_token_days()}")
    raw = _new_secret(API_TOKEN_PREFIX)
    token = APIToken.objects.create(
        user=user,
        label=label,
        prefix=raw[:12],
        token_hash=hash_token(raw),
        scope=scope,
        team=team,
        expires_at=(now or timezone.now()) + timedelta(days=days),
    )
    return token, raw


def authenticate_agent(raw_token: str) -> AgentToken | None:
    """The active agent token matching ``raw_token`` (with its service loaded), else None."""
    if not raw_token.startswith(AGENT_TOKEN_PREFIX) or len(raw_token) > MAX_TOKEN_LENGTH:
        return None
    token = (
        AgentToken.objects.select_related("service")
        .filter(token_hash=hash_token(raw_token), revoked_at__isnull=True)
        .first()
    )
    if token is not None:
        token.touch()
    return token


def find_api_token(raw_token: str) -> APIToken | None:
    """The unrevoked personal API token matching ``raw_token`` (with its user loaded),
    expired or not, else None. One query; it does not record a use."""
    if not raw_token.startswith(API_TOKEN_PREFIX) or len(raw_token) > MAX_TOKEN_LENGTH:
        return None
    return (
        APIToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw_token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )


def expired_reason(expires_at: datetime) -> str:
    """Why a token past its expiry is refused (the API's 401 and the request guard's)."""
    return f"API token expired at {expires_at.isoformat()}."


def is_expired(token: APIToken, now: datetime | None = None) -> bool:
    """Whether ``token`` is past its expiry (never, without one)."""
    return token.expires_at is not None and token.expires_at <= (now or timezone.now())


def authenticate_api_token(raw_token: str) -> APIToken | None:
    """The active (unrevoked, unexpired) personal API token matching ``raw_token``, else
    None; records the use."""
    token = find_api_token(raw_token)
    if token is None or is_expired(token):
        return None
    token.touch()
    return token

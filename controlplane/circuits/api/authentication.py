"""DRF authentication by personal API token (``Authorization: Bearer syu_...``)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from controlplane.circuits import access
from controlplane.circuits.auth import (
    API_TOKEN_PREFIX,
    bearer_token,
    expired_reason,
    find_api_token,
    is_expired,
)


class APITokenAuthentication(authentication.BaseAuthentication):
    """Authenticates a request as the owner of a personal API token, with the user's
    permissions cut to the token's scope and team (access.py)."""

    keyword = "Bearer"
    realm = "api"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        if raw is None:
            return None
        if not raw.startswith(API_TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed(
                "Bearer token is not a personal API token (syu_...)."
            )
        token = find_api_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        if is_expired(token):
            assert token.expires_at is not None
            raise exceptions.AuthenticationFailed(expired_reason(token.expires_at))
        token.touch()
        access.act_through(token.user, token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        """The 401 challenge (DRF answers 403 instead when the first class has none)."""
        return f'{self.keyword} realm="{self.realm}"'


class APITokenScheme(OpenApiAuthenticationExtension):
    """Documents personal API tokens in the OpenAPI schema."""

    target_class = "controlplane.circuits.api.authentication.APITokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "syu_<random>"}

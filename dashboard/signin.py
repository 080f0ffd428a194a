"""Signing in and out: the password form (SWITCHYARD_LOCAL_LOGIN) and single sign-on
with OpenID Connect (controlplane/circuits/sso.py, docs/sso.md).

The single sign-on routes need no login and no CSRF token: the start only sends the
browser to the provider with a fresh state, nonce and PKCE challenge kept in the session,
and the callback accepts an answer only with a state this session started (once), whose
ID token carries the matching nonce.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

logger = logging.getLogger(__name__)

TEMPLATE = "dashboard/login.html"
LOCAL_LOGIN_OFF = (
    "Signing in with a password is turned off on this Switchyard "
    "(SWITCHYARD_LOCAL_LOGIN=0): sign in with {provider}."
)
SSO_FAILED = "Signing in with {provider} did not succeed. Please try again."
SSO_REFUSED = (
    "Signing in with {provider} was refused: its answer could not be verified (it does "
    "not belong to a sign-in started in this browser, or its token is not valid)."
)


def _context(**extra: Any) -> dict[str, Any]:
    return {
        "sso": settings.SWITCHYARD_OIDC_ENABLED,
        "sso_name": settings.SWITCHYARD_OIDC_PROVIDER_NAME,
        "local_login": settings.SWITCHYARD_LOCAL_LOGIN,
        **extra,
    }


class LoginView(auth_views.LoginView):
    """The sign-in page: the password form while SWITCHYARD_LOCAL_LOGIN is on, and a
    "Sign in with <provider>" link while single sign-on is set up."""

    template_name = TEMPLATE

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        provider = settings.SWITCHYARD_OIDC_PROVIDER_NAME
        error = SSO_FAILED.format(provider=provider) if self.request.GET.get("sso") else ""
        return {**context, **_context(sso_error=error)}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.SWITCHYARD_LOCAL_LOGIN:
            message = LOCAL_LOGIN_OFF.format(provider=settings.SWITCHYARD_OIDC_PROVIDER_NAME)
            context = _context(sso_error=message, next=request.POST.get("next", ""))
            return render(request, TEMPLATE, context, status=403)
        return super().post(request, *args, **kwargs)


class _SSOOnly:
    """Single sign-on's routes answer 404 while it is not set up."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.SWITCHYARD_OIDC_ENABLED:
            raise Http404("single sign-on is not set up")
        response: HttpResponse = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        return response


class SSOStartView(_SSOOnly, OIDCAuthenticationRequestView):
    """Sends the browser to the provider (state, nonce and PKCE kept in the session)."""


class SSOCallbackView(_SSOOnly, OIDCAuthenticationCallbackView):
    """The provider's answer: a state this session did not start is refused (400)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            response: HttpResponse = super().get(request)
        except SuspiciousOperation as exc:
            logger.warning("single sign-on answer refused: %s", exc)
            message = SSO_REFUSED.format(provider=settings.SWITCHYARD_OIDC_PROVIDER_NAME)
            return render(request, TEMPLATE, _context(sso_error=message), status=400)
        return response


class LogoutView(auth_views.LogoutView):
    """Ends the session here; then, when SWITCHYARD_OIDC_END_SESSION_ENDPOINT is set and
    the user signed in with single sign-on, at the provider too (RP-initiated logout)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        id_token = request.session.get("oidc_id_token")
        response: HttpResponse = super().post(request, *args, **kwargs)
        end_session = settings.SWITCHYARD_OIDC_END_SESSION_ENDPOINT
        if settings.SWITCHYARD_OIDC_ENABLED and end_session and id_token:
            query = urlencode(
                {
                    "id_token_hint": id_token,
                    "post_logout_redirect_uri": request.build_absolute_uri(
                        settings.LOGOUT_REDIRECT_URL
                    ),
                }
            )
            return HttpResponseRedirect(f"{end_session}?{query}")
        return response

"""The one JSON shape of every API error, agent and operator endpoints alike.

``{"detail": str, "field": str, "reason": str, "errors": {field: reason, ...}}``:
every field at fault is listed in ``errors`` (object keys joined with dots, list items
by index in brackets: ``breakers[3].state``), the first one is repeated in
``field``/``reason``, and ``detail`` reads ``"<field>: <reason>"``. An error about no
field (403, 404, 405, a serializer's cross-field check) has the field ``"detail"`` and
``detail`` is the reason alone; a missing or invalid credential has the field
``"authorization"``. Some errors add keys of their own (a 409 carries the versions it
compared). See docs/api.md.
"""

import logging
import sys
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

# The field of an error about no field in particular.
NON_FIELD = "detail"
# The field of a missing or invalid credential (the Authorization header).
CREDENTIALS_FIELD = "authorization"
# Retry-After of a 503 for a database that is away (seconds).
UNAVAILABLE_RETRY_AFTER = 5
UNAVAILABLE_REASON = "the database is unavailable; retry later"

logger = logging.getLogger(__name__)


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the database cannot be reached or used now (a refused or
    timed-out connect, no pooled connection in time, a connection lost mid-request, a
    statement cancelled by ``statement_timeout``), as opposed to a bug."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover (SQLite only)
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def unavailable_response(request_path: str = "/api/") -> HttpResponse:
    """503 with Retry-After: the error shape under /api/, a plain page elsewhere."""
    if request_path.startswith("/api/"):
        response: HttpResponse = error_response(503, {NON_FIELD: UNAVAILABLE_REASON})
    else:
        response = HttpResponse(
            "503 Service Unavailable: the database is unavailable; retry later.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    return response


def error_body(errors: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    """``{"detail", "field", "reason", "errors"}``: the first field leads, all are listed."""
    field, reason = next(iter(errors.items()))
    detail = reason if field == NON_FIELD else f"{field}: {reason}"
    return {"detail": detail, "field": field, "reason": reason, "errors": dict(errors), **extra}


def error_response(status: int, errors: Mapping[str, str], **extra: Any) -> JsonResponse:
    """A plain Django response carrying ``error_body(errors, **extra)``."""
    return JsonResponse(error_body(errors, **extra), status=status)


def flatten_errors(detail: Any, path: str = "") -> dict[str, str]:
    """DRF error details as ``{path: reason}``; several reasons for one path join with "; ".

    Paths read like the sync's: ``config.failure_threshold``, ``items[1].qty``.
    """
    if isinstance(detail, Mapping):
        flat: dict[str, str] = {}
        for key, value in detail.items():
            if key in (api_settings.NON_FIELD_ERRORS_KEY, NON_FIELD):
                # A nested object's own (cross-field) error belongs to the object's path.
                flat.update(flatten_errors(value, path))
            else:
                flat.update(flatten_errors(value, f"{path}.{key}" if path else str(key)))
        return flat
    if isinstance(detail, list | tuple):
        if all(not isinstance(item, Mapping | list | tuple) for item in detail):
            return {path or NON_FIELD: "; ".join(str(item) for item in detail)} if detail else {}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(flatten_errors(item, f"{path}[{index}]"))
        return flat
    return {path or NON_FIELD: str(detail)}


class Conflict(exceptions.APIException):
    """409: the request was based on a state that has changed; ``extra`` goes in the body."""

    status_code = 409
    default_detail = "the resource changed since it was read; reload it and retry"
    default_code = "conflict"

    def __init__(self, field: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.field = field
        self.extra = extra


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, headers), with every body in the one error shape.

    Model validation errors become 400s naming their fields.
    """
    if database_unavailable(exc):
        logger.warning("database unavailable: %s", exc)
        return Response(
            error_body({NON_FIELD: UNAVAILABLE_REASON}),
            status=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD: exc.messages}
        exc = exceptions.ValidationError(detail)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    extra: dict[str, Any] = {}
    if isinstance(exc, Conflict):
        errors = {exc.field: str(exc.detail)}
        extra = exc.extra
    elif isinstance(exc, exceptions.ParseError):
        # Named like the sync's malformed-JSON error.
        errors = {"body": str(exc.detail)}
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        errors = {CREDENTIALS_FIELD: str(exc.detail)}
        challenge = response.get("WWW-Authenticate", "")
        if isinstance(exc, exceptions.AuthenticationFailed) and challenge.startswith("Bearer"):
            response["WWW-Authenticate"] = f'{challenge}, error="invalid_token"'
    else:
        errors = flatten_errors(response.data) or {NON_FIELD: "invalid input"}
    response.data = error_body(errors, **extra)
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: the error shape under /api/, Django's page elsewhere."""
    if _is_api(request):
        return error_response(404, {NON_FIELD: f"no API endpoint at {request.path}"})
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: the error shape under /api/ (no internals), Django's page elsewhere;
    a 503 with Retry-After when the error was the database being away."""
    if database_unavailable(sys.exc_info()[1]):
        return unavailable_response(request.path)
    if _is_api(request):
        return error_response(500, {NON_FIELD: "internal server error"})
    return defaults.server_error(request)


class DatabaseUnavailableMiddleware:
    """A view that fails because the database is away answers 503 with Retry-After (the
    error shape under /api/, a plain page elsewhere), not a 500."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None
        logger.warning("database unavailable: %s %s: %s", request.method, request.path, exception)
        return unavailable_response(request.path)


class ApiError(Exception):
    """A request refused with ``status`` and ``errors`` ({field: reason}) in the error
    shape, plus ``headers`` (Retry-After, WWW-Authenticate); :meth:`response` renders it.
    """

    def __init__(self, status: int, errors: Mapping[str, str], **headers: str) -> None:
        self.status = status
        self.errors = dict(errors)
        self.headers = headers
        field_name, reason = next(iter(self.errors.items()))
        super().__init__(f"{field_name}: {reason}")

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return error_body(self.errors)

    def response(self) -> JsonResponse:
        """The error as a Django response."""
        response = error_response(self.status, self.errors)
        for name, value in self.headers.items():
            response[name] = value
        return response


def unavailable(reason: str = UNAVAILABLE_REASON) -> ApiError:
    """A retryable 503 with Retry-After."""
    return ApiError(503, {NON_FIELD: reason}, **{"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})

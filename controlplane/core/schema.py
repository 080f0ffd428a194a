"""The OpenAPI schema (drf-spectacular) as the contract of every API answer.

* :class:`AutoSchema` adds the error answers each operation can give, in the one error
  shape of :mod:`controlplane.core.errors`, to what the views declare: ``401``
  everywhere a credential is needed, ``403`` (roles, CSRF) and ``404`` (no such object,
  a page past the end) on the operator API, ``400`` wherever a body or query parameter
  is read, ``405`` nowhere (a method not routed is not an operation), ``503`` everywhere
  (the database unreachable).
* The routes served by plain Django views (the agent sync and watch, ``/healthz``) are
  added by the circuits app's hook, :func:`controlplane.circuits.schema.add_plain_views`.

``tests/core/test_schema_contract.py`` checks real answers against this schema.
"""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """The one error shape: ``errors`` lists every field at fault, the first leads."""

    detail = serializers.CharField(help_text='"<field>: <reason>", or the reason alone')
    field = serializers.CharField(help_text="the first field at fault (see docs/api.md)")
    reason = serializers.CharField(help_text="why, for that field")
    # Named like Serializer.errors: the serializer's metaclass takes it as a field.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.CharField(), help_text="every field at fault: {field: reason}"
    )


class ConflictErrorSerializer(ErrorSerializer):
    """A 409: the error shape with the two versions compared."""

    expected_version = serializers.IntegerField()
    current_version = serializers.IntegerField()


def error(description: str, serializer: type[serializers.Serializer] = ErrorSerializer) -> Any:
    """A documented error answer in the one error shape."""
    return OpenApiResponse(serializer, description=description)


BAD_REQUEST = error("bad body or query parameter; `field` names it")
UNAUTHENTICATED = error("no credential, or an unknown or revoked token (`WWW-Authenticate`)")
FORBIDDEN = error("authenticated, but not allowed (role, CSRF)")
NOT_FOUND = error("no such object, or a page past the end")
CONFLICT = error("expected_version is not the current version", ConflictErrorSerializer)
TOO_LARGE = error("body, breakers or transitions over the limits")
TOO_MANY = error("over the request rate limit")
UNAVAILABLE = error("the database is unreachable")

# The query parameters every list reads without refusing anything.
_LENIENT_QUERY = frozenset({"page_size"})


# Text the server takes: no NUL character (Django and DRF refuse it, PostgreSQL cannot
# store it), and, where blank is refused after trimming, a character other than
# whitespace ("  " is trimmed to "" and refused: minLength 1 alone would allow it).
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema with every error answer of the operation listed, and
    request schemas as strict as the server: a body whose schema requires a property is
    required, text fields carry :data:`NO_NUL` or :data:`NOT_BLANK`, and query
    parameters the bounds their filters check."""

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and schema.get("type") == "string"
            and "pattern" not in schema
            and "enum" not in schema
        ):
            blank_refused = not field.allow_blank and field.trim_whitespace
            schema["pattern"] = NOT_BLANK if blank_refused else NO_NUL
        return schema

    def _get_filter_parameters(self) -> list[dict[str, Any]]:
        """Query parameters of the filterset with the bounds its form checks: ``maxLength``,
        no NUL, and the choices a callable gives (drf-spectacular leaves these out)."""
        parameters: list[dict[str, Any]] = super()._get_filter_parameters()
        filterset = getattr(self.view, "filterset_class", None)
        declared_filters = filterset.base_filters if filterset is not None else {}
        for parameter in parameters:
            declared = declared_filters.get(parameter["name"])
            if declared is None:
                continue
            schema = parameter["schema"].get("items", parameter["schema"])
            if "max_length" in declared.extra:
                schema["maxLength"] = declared.extra["max_length"]
            if schema.get("type") == "string" and "format" not in schema:
                schema.setdefault("pattern", NO_NUL)
            choices = declared.extra.get("choices")
            if callable(choices):
                schema["enum"] = [value for value, _ in choices()]
        return parameters

    def _get_request_for_media_type(self, serializer: Any, direction: Any = "request") -> Any:
        schema, required = super()._get_request_for_media_type(serializer, direction)
        if isinstance(serializer, dict) and serializer.get("required"):
            required = True  # a raw schema (the agent sync) with required properties
        return schema, required

    def _error_responses(self) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        agent = self.path.startswith("/api/v1/agent/")
        if self.get_auth():
            errors["401"] = UNAUTHENTICATED
            if not agent:  # an agent token has no roles (the sync declares its own 403)
                errors["403"] = FORBIDDEN
        reads_query = any(
            p.get("in") == "query" and p.get("name") not in _LENIENT_QUERY
            for p in self._get_parameters()
        )
        if reads_query or self.method in ("POST", "PUT", "PATCH", "DELETE"):
            errors["400"] = BAD_REQUEST
        if self.path.startswith("/api/v1/") and not agent:
            errors["404"] = NOT_FOUND
        errors["503"] = UNAVAILABLE
        return errors

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code, answer in self._error_responses().items():
            if code not in responses or "content" not in responses[code]:
                # A declared error without a body (a description alone) gets the shape too.
                description = responses.get(code, {}).get("description") or answer.description
                answer = OpenApiResponse(answer.response, description=description)
                responses[code] = self._get_response_for_code(answer, code, direction=direction)
        for code, declared in list(responses.items()):
            if code.startswith(("4", "5")) and "content" not in declared:
                answer = error(declared.get("description") or "error")
                responses[code] = self._get_response_for_code(answer, code, direction=direction)
        return dict(sorted(responses.items()))

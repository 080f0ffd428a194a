"""Filters shared by the API's list endpoints."""

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django_filters import fields
from django_filters import rest_framework as filters


class UTCIsoDateTimeField(fields.IsoDateTimeField):
    """An ISO 8601 date-time, handed to the database in UTC.

    RFC 3339 allows UTC offsets up to 23:59, PostgreSQL only up to 15:59; and a time
    near the ends of the calendar may leave years 1-9999 once in UTC. The first is
    converted, the second refused (400 naming the parameter), never a 500."""

    def to_python(self, value: Any) -> datetime | None:
        parsed: datetime | None = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                "the time leaves years 1-9999 once in UTC", code="invalid"
            ) from None


class UTCIsoDateTimeFilter(filters.IsoDateTimeFilter):
    """``IsoDateTimeFilter`` with :class:`UTCIsoDateTimeField`."""

    field_class = UTCIsoDateTimeField

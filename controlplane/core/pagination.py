"""Pagination of the API's lists: page numbers for the small ones, keysets for history."""

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from controlplane.core import keyset

# Rows per page of every list: the default, and the most a client may ask for.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class PageNumberPagination(pagination.PageNumberPagination):
    """``?page=N&page_size=M`` with M at most 500."""

    page_size = PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE


class KeysetPagination(pagination.BasePagination):
    """History lists, newest first, by position ``(at, id)`` (``core.keyset``):
    ``?before=<at>,<id>`` (older rows), ``?after=<at>,<id>`` (newer rows),
    ``page_size`` from 1 to 500. Answers ``{"next", "previous", "results"}``: ``next``
    links the older page, ``previous`` the newer one, each null at its end. No count."""

    page_size = PAGE_SIZE
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "page_size"

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        try:
            before, after = keyset.parse_cursor(request.query_params)
            size = keyset.parse_page_size(
                request.query_params.get(self.page_size_query_param),
                self.page_size,
                self.max_page_size,
                self.page_size_query_param,
            )
        except keyset.KeysetError as exc:
            raise ValidationError({exc.field: [exc.reason]}) from None
        self.request = request
        self.page = keyset.page(queryset, before=before, after=after, size=size)
        return list(self.page.rows)

    def _link(self, params: dict[str, str] | None) -> str | None:
        if params is None:
            return None
        url = self.request.build_absolute_uri()
        for name in (keyset.BEFORE, keyset.AFTER):
            url = remove_query_param(url, name)
        for name, value in params.items():
            url = replace_query_param(url, name, value)
        return url

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "next": self._link(self.page.older),
                "previous": self._link(self.page.newer),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "the older page, null at the oldest"},
                "previous": {**link, "description": "the newer page, null at the newest"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        position = {
            "type": "string",
            "maxLength": 64,
            "example": "2026-11-27T10:04:00.123456Z,8812",
        }
        return [
            {
                "name": keyset.BEFORE,
                "in": "query",
                "required": False,
                "description": "rows older than this position (`<at>,<id>`, from `next`)",
                "schema": position,
            },
            {
                "name": keyset.AFTER,
                "in": "query",
                "required": False,
                "description": "rows newer than this position (from `previous`)",
                "schema": position,
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": f"rows per page (default {self.page_size})",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]

"""Page-number pagination with a client-chosen ``page_size`` (bounded)."""

from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """``?page=N&page_size=M`` with M at most 500."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

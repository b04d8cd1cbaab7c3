from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class VersionCursorPagination(pagination.CursorPagination):
    """Versions are the big table: a cursor needs no COUNT(*) and stays fast on any page."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = ("-created_at", "-id")

"""The one pagination of every API list (settings' DEFAULT_PAGINATION_CLASS)."""

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M``; the body is ``{count, next, previous, results}``. The default page size is
    settings' PAGE_SIZE; a page number past the end is a 404."""

    page_size_query_param = "page_size"
    max_page_size = 100

    def get_paginated_response_schema(self, schema: dict) -> dict:
        paginated = super().get_paginated_response_schema(schema)
        for link in ("next", "previous"):  # OpenAPI 3.1 (settings): null is a type, "nullable" is gone
            paginated["properties"][link] = {"type": ["string", "null"], "format": "uri"}
        return paginated

"""The one pagination of every API list (settings' DEFAULT_PAGINATION_CLASS)."""

import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

_WHOLE_NUMBER = re.compile(r"[1-9][0-9]{0,999}")  # any page number; a longer string is no number


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M``; the body is ``{count, next, previous, results}``. The default page size is
    settings' PAGE_SIZE, a larger one than ``max_page_size`` is cut to it; a page number past the end is a
    404. Either parameter that is not one whole number from 1 (``0``, ``2.5``, ``abc``, empty, given twice)
    is a 400, where DRF would quietly use the first page or the default size."""

    page_size_query_param = "page_size"
    max_page_size = 100
    last_page_strings = ()  # DRF's ?page=last: the schema says a page is a number

    def get_page_size(self, request) -> int:
        page_size = _whole_number(request, self.page_size_query_param)
        return self.page_size if page_size is None else min(page_size, self.max_page_size)

    def get_page_number(self, request, paginator) -> int:
        page = _whole_number(request, self.page_query_param)
        return 1 if page is None else page

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page, at most {self.max_page_size} (more is cut to it)."
                )
        return parameters

    def get_paginated_response_schema(self, schema: dict) -> dict:
        paginated = super().get_paginated_response_schema(schema)
        for link in ("next", "previous"):  # OpenAPI 3.1 (settings): null is a type, "nullable" is gone
            paginated["properties"][link] = {"type": ["string", "null"], "format": "uri"}
        return paginated


def _whole_number(request, name: str) -> int | None:
    """The query parameter ``name`` as a whole number from 1; None when it is absent."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1 or not _WHOLE_NUMBER.fullmatch(values[0]):
        raise ValidationError({name: [f"{name} is one whole number from 1 (e.g. ?{name}=2)."]})
    return int(values[0])

"""The one pagination of every API list (settings' DEFAULT_PAGINATION_CLASS)."""

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M``; the body is ``{count, next, previous, results}``. The default page size is
    settings' PAGE_SIZE; a page number past the end is a 404."""

    page_size_query_param = "page_size"
    max_page_size = 100


def paged(serializer) -> dict:
    """The 200 of a paged list for ``extend_schema(responses={**paged(...), **problem_responses(...)})``.

    Keyed by (code, media type) like the problem responses: drf-spectacular reads the lowest key as the
    operation's main response (list or not, paginated or not), and a bare 200 sorts after "(400, ...)".
    """
    return {(200, "application/json"): serializer}

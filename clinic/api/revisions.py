"""Conflict-safe edits in the API: a case's revision (``cases.revisions``) as its ETag, and If-Match.

``GET /api/cases/{id}/`` sends ``ETag: "<revision>"``; a write that edits the case (its tumour type,
its diagnoses, its outline) takes that value back in ``If-Match`` and is refused with 409 when the case
has moved on meanwhile (``CaseEditConflict``, turned into the problem by ``clinic.api.errors``). If-Match
is optional: a client that sends none overwrites whatever is there, as before. Every successful write
answers with the case's new ETag.
"""

from __future__ import annotations

import re

from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from cases.models import Case

# One strong ETag as GET /api/cases/{id}/ sends it; at most 18 digits, so any value fits a bigint.
_REVISION_ETAG = r'"([1-9][0-9]{0,17})"'
_STRONG_ETAG = re.compile(_REVISION_ETAG)
IF_MATCH_PATTERN = rf"^(\*|{_REVISION_ETAG})$"  # the schema's: that ETag or *

IF_MATCH_MESSAGE = (
    'If-Match takes the ETag of GET /api/cases/{id}/ as it was sent, one value in double quotes (e.g. "3"), '
    "or * (no check)."
)


def etag_parameters(*codes: int) -> list[OpenApiParameter]:
    """For ``extend_schema(parameters=...)``: the If-Match request header of a write and the ETag header
    of its answers with these status codes."""
    return [
        OpenApiParameter(
            "If-Match",
            str,
            OpenApiParameter.HEADER,
            pattern=IF_MATCH_PATTERN,
            description="the case's ETag as last read; the write is refused (409) if the case changed "
            "since, and a malformed value is a 400. Optional: without it nothing is checked.",
        ),
        etag_header(*codes),
    ]


def etag_header(*codes: int) -> OpenApiParameter:
    return OpenApiParameter(
        "ETag",
        str,
        OpenApiParameter.HEADER,
        description="the case's revision, quoted: send it back in If-Match to edit the case safely",
        response=list(codes),
    )


def case_etag(case: Case) -> str:
    return f'"{case.revision}"'


def with_case_etag(response: Response, case: Case) -> Response:
    response["ETag"] = case_etag(case)
    return response


def if_match_revision(request: Request) -> int | None:
    """The revision an If-Match header names; None without the header or with ``*``. A malformed value
    (a weak ETag, a list, no quotes) is a 400: guessing could overwrite someone's edit."""
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    match = _STRONG_ETAG.fullmatch(value.strip())
    if match is None:
        raise ValidationError({"If-Match": [IF_MATCH_MESSAGE]})
    return int(match.group(1))

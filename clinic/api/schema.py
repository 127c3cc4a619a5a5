"""What the OpenAPI schema declares beyond the serializers: error responses, paged lists, PNG and DICOM
bodies."""

from http import HTTPStatus

from drf_spectacular.utils import OpenApiResponse

from clinic.api.errors import PROBLEM_CONTENT_TYPE, ProblemSerializer

# A PNG body in OpenAPI 3.1 (settings): bytes of that media type, not a JSON string.
PNG = {"contentMediaType": "image/png"}
# A DICOM Part 10 file (PS3.18 section 8.7.3), likewise.
DICOM = {"contentMediaType": "application/dicom"}
# What the DICOM Segmentation downloads say in the schema (clinic.downloads makes them).
SEG_DESCRIPTION = (
    'A DICOM Segmentation (PS3.3 A.51; BINARY, one segment "Tumour": SCT Morphologically Abnormal '
    "Structure / Neoplasm) referencing the case's stored, de-identified DICOM image: its SOP instance, "
    "series and frame of reference, its pixel spacing and size. Only for cases uploaded as DICOM: for any "
    "other case, 404 with a problem whose detail says why."
)


def problem_responses(*codes: int, public: bool = False) -> dict:
    """The error responses of an operation for ``extend_schema(responses=...)``: the given codes, 401 and
    403 unless the endpoint is public, and 500, which any endpoint can answer."""
    declared = {*codes, 500} if public else {*codes, 401, 403, 500}
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=HTTPStatus(code).phrase)
        for code in sorted(declared)
    }


def paged(serializer) -> dict:
    """The 200 of a paged list for ``extend_schema(responses={**paged(...), **problem_responses(...)})``.

    Keyed by (code, media type) like the problem responses: drf-spectacular reads the lowest key as the
    operation's main response (list or not, paginated or not), and a bare 200 sorts after "(400, ...)".
    """
    return {(200, "application/json"): serializer}


# The answers of a DICOM Segmentation download (clinic.downloads): the file, or a 404 problem saying why.
SEG_RESPONSES = {(200, "application/dicom"): DICOM, **problem_responses(404)}

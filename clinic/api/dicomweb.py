"""DICOMweb STOW-RS: ``POST /dicomweb/studies`` (DICOM PS3.18 section 10.5, Store Instances), so that a
PACS or a viewer sends studies straight in.

The body is ``multipart/related; type="application/dicom"``: one DICOM Part 10 file per part (PS3.18
section 8.6.1.2). Each instance goes through the upload's own path (``case_uploads_read`` then
``clinic.uploads.upload_record``): read, de-identified, one case per frame, joined to its patient and study
by their keyed pseudonyms, queued for segmentation; each in its own transaction, so one bad instance fails
alone. The answer is a DICOM JSON data set (PS3.18 section 10.5.3, PS3.18 annex F): ``ReferencedSOPSequence``
for the instances stored, each with WarningReason B000 (coercion of data elements: the stored copy is
de-identified), ``FailedSOPSequence`` for the others with their FailureReason, and the status 200 (all
stored), 202 (some stored) or 409 (none). Why each one failed is also said in words, in one ``Warning``
header, one warning-value per failed instance (PS3.18 section 8.3.5.1: code 299).

Only ``/dicomweb/studies`` is served: not ``/studies/{StudyInstanceUID}`` (the study is read from each
file), nor the metadata-and-bulk-data form of the request, nor the other DICOMweb services (no retrieval:
the stored copies are de-identified slices, not the sender's instances).
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import warnings

import pydicom
from django.conf import settings
from django.http.multipartparser import parse_header_parameters
from drf_spectacular.utils import extend_schema
from pydicom.dataset import Dataset
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from cases.readers import ImageReadError
from cases.services import DuplicateUpload, StudyOfAnotherPatient, case_uploads_read
from clinic.api.authentication import UploadRateThrottle
from clinic.api.errors import ContentTooLarge
from clinic.uploads import upload_record

DICOM_JSON = "application/dicom+json"

logger = logging.getLogger(__name__)

# FailureReason values: the C-STORE statuses (PS3.4 table B.2-1; 0111 Duplicate SOP Instance: PS3.7 annex C).
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
# WarningReason: the instance was stored with some of its elements changed (de-identified).
COERCION_OF_DATA_ELEMENTS = 0xB000


class DicomJsonRenderer(JSONRenderer):
    media_type = DICOM_JSON


class LengthRequired(exceptions.APIException):
    status_code = 411
    default_detail = "The request has no Content-Length."
    default_code = "length_required"


class StowInstance:
    """What the response says of one part: its SOP class and instance (as sent) and how it went."""

    def __init__(self, sop_class: str | None, sop_instance: str | None):
        self.sop_class, self.sop_instance = sop_class, sop_instance
        self.failure: int | None = None
        self.message = ""
        self.case_ids: list[int] = []

    def fail(self, reason: int, message: str) -> None:
        self.failure, self.message = reason, message

    def item(self) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID = self.sop_class
        item.ReferencedSOPInstanceUID = self.sop_instance
        if self.failure is None:
            item.WarningReason = COERCION_OF_DATA_ELEMENTS
        else:
            item.FailureReason = self.failure
        return item


@extend_schema(
    exclude=True  # PS3.18 specifies it (multipart/related of DICOM files); docs/api.md, "DICOMweb"
)
class StudiesStoreApi(APIView):
    """``POST``: store the instances of a multipart/related request (STOW-RS), as the clinician's uploads."""

    required_permissions = {"POST": "cases.add_case"}
    throttle_classes = [UploadRateThrottle]  # one request, however many instances, counts once
    renderer_classes = [DicomJsonRenderer, JSONRenderer]

    def post(self, request):
        boundary = _boundary(request.META.get("CONTENT_TYPE", ""))
        parts = multipart_related_parts(_body(request), boundary)
        if not parts:
            raise exceptions.ParseError("The request holds no part: send one DICOM file per part.")
        results = [_store(data, request.user) for data in parts]
        stored = sum(1 for result in results if result.failure is None)
        response = Response(
            _response_dataset(results).to_json_dict(),
            status=(
                status.HTTP_200_OK
                if stored == len(results)
                else status.HTTP_202_ACCEPTED
                if stored
                else status.HTTP_409_CONFLICT
            ),
            content_type=DICOM_JSON,
        )
        host = request.get_host()
        warnings_said = [
            f'299 {host} "{_header_text(f"part {number}: {result.message}")}"'
            for number, result in enumerate(results, start=1)
            if result.failure is not None
        ]
        if warnings_said:
            response["Warning"] = ", ".join(warnings_said)
        return response


def _store(data: bytes, user) -> StowInstance:
    """One part as one upload, in its own transaction; a failure is recorded, never raised."""
    result = StowInstance(*_sop_uids(data))
    try:
        uploads = case_uploads_read(image_file=data, filename="")
        recorded = upload_record(uploads=uploads, user=user)
    except DuplicateUpload as exc:
        result.fail(DUPLICATE_SOP_INSTANCE, str(exc))
    except StudyOfAnotherPatient as exc:
        result.fail(PROCESSING_FAILURE, str(exc))
    except ImageReadError as exc:
        too_large = "too large" in str(exc) or "the limit is" in str(exc)
        result.fail(OUT_OF_RESOURCES if too_large else CANNOT_UNDERSTAND, str(exc))
    except Exception:  # the instances before it are stored: say so for each rather than answer 500
        logger.exception("STOW-RS: storing an instance failed")
        result.fail(PROCESSING_FAILURE, "The server failed to store this instance; the error was logged.")
    else:
        result.case_ids = [case.pk for case in recorded.cases]
    return result


def _sop_uids(data: bytes) -> tuple[str | None, str | None]:
    """The part's SOP Class and Instance UIDs as sent (the response names the instances by them), or
    None where the part does not say or cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(
                io.BytesIO(data), force=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
            )
        values = (str(ds.get("SOPClassUID") or ""), str(ds.get("SOPInstanceUID") or ""))
    except Exception:  # any unreadable part: the store says why; the names are only unknown
        return None, None
    return tuple(value if _UID.match(value) else None for value in values)


_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _response_dataset(results: list[StowInstance]) -> Dataset:
    """The Store Instances Response Module (PS3.18 table 10.5.3-3)."""
    response = Dataset()
    referenced = [result.item() for result in results if result.failure is None]
    failed = [result.item() for result in results if result.failure is not None]
    if referenced:
        response.ReferencedSOPSequence = referenced
    if failed:
        response.FailedSOPSequence = failed
    return response


def _boundary(content_type: str) -> bytes:
    """The boundary of a ``multipart/related; type="application/dicom"`` request, else 415."""
    media_type, params = parse_header_parameters(content_type)
    kind = (params.get("type") or "").strip().lower()
    if media_type.lower() != "multipart/related" or kind != "application/dicom":
        raise exceptions.UnsupportedMediaType(
            content_type or "(none)",
            detail=(
                f"The request is {content_type or 'without a Content-Type'}; STOW-RS here takes "
                'multipart/related; type="application/dicom" (one DICOM file per part, PS3.18 '
                "section 10.5.1). The metadata and bulk data form is not supported."
            ),
        )
    boundary = params.get("boundary") or ""
    if not boundary or len(boundary) > 70:  # RFC 2046 section 5.1.1
        raise exceptions.ParseError("The multipart/related Content-Type names no valid boundary.")
    return boundary.encode("latin-1")


def _body(request) -> bytes:
    """The request body, at most ``TUMORSITE_DICOMWEB_MAX_MB``. A chunked body (no Content-Length, as
    dicomweb-client sends bodies over 1 MB) is read when the server decodes it (gunicorn says so with
    ``wsgi.input_terminated``); other servers hand Django no length, so it is refused with 411."""
    limit = settings.TUMORSITE_DICOMWEB_MAX_MB * 1024 * 1024
    meta = request.META
    too_large = (
        f"The request is larger than {settings.TUMORSITE_DICOMWEB_MAX_MB} MB; send the study in several "
        "requests."
    )
    if not meta.get("CONTENT_LENGTH"):
        if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() and meta.get("wsgi.input_terminated"):
            data = meta["wsgi.input"].read(limit + 1)
            if len(data) > limit:
                raise ContentTooLarge(too_large)
            return data
        raise LengthRequired(
            "The request has no Content-Length and this server cannot read a chunked body: send the "
            "length (dicomweb-client: set_chunk_size above the request's size) or run behind gunicorn."
        )
    try:
        length = int(meta["CONTENT_LENGTH"])
    except ValueError:
        raise exceptions.ParseError("The Content-Length is not a number.") from None
    if length > limit:
        raise ContentTooLarge(too_large)
    return request._request.read(length)


def multipart_related_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts' contents of a multipart body (RFC 2046 section 5.1.1), their headers dropped; a part
    whose Content-Type is given and is not application/dicom is refused (415). A delimiter is a whole
    line: CRLF, "--", the boundary, optional white space and CRLF (or "--" for the last), so the
    boundary's characters inside a DICOM file do not split it."""
    delimiter = re.compile(rb"\r\n--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|$)")
    data = b"\r\n" + body  # the first delimiter may open the body, without the CRLF before it
    matches = list(delimiter.finditer(data))
    parts = []
    for match, following in itertools.pairwise(matches):
        if match.group(1):  # the close delimiter: the epilogue follows
            break
        piece = data[match.end() : following.start()]
        if piece.startswith(b"\r\n"):
            headers, content = b"", piece[2:]
        else:
            header_end = piece.find(b"\r\n\r\n")
            if header_end < 0:
                raise exceptions.ParseError("A multipart part has no blank line after its headers.")
            headers, content = piece[:header_end], piece[header_end + 4 :]
        _check_part_type(headers)
        parts.append(content)
    if matches and not any(match.group(1) for match in matches):
        raise exceptions.ParseError("The multipart body has no closing boundary: it is cut off.")
    return parts


def _check_part_type(headers: bytes) -> None:
    for line in headers.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            media_type, _ = parse_header_parameters(value.strip())
            if media_type.lower() != "application/dicom":
                raise exceptions.UnsupportedMediaType(
                    media_type,
                    detail=f"A part is {media_type}; each part must be a DICOM file (application/dicom).",
                )


def _header_text(message: str, limit: int = 300) -> str:
    """A message as an HTTP header's quoted string: ASCII, one line, no quotes or backslashes."""
    text = message.encode("ascii", "replace").decode("ascii")
    text = re.sub(r"[\x00-\x1f\x7f\"\\]", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."

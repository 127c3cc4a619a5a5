"""Reads the audit trail records: who opened which case, image, mask or report, page and API alike.

One middleware and one table, instead of a line in every view: a route is named here with the event it
counts as and the URL argument that names its object, or in ``NOT_AUDITED`` with the reason it is not.
``tests/audit/test_reads.py`` walks the URLconf and fails on a route in neither, so a new route cannot go
unaudited by accident. Only a successful GET (2xx) is recorded: a refusal, a 404 or a 304 from the
browser's cache showed nothing new. Writes are recorded by the service functions that make them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import models
from django.http import HttpRequest, HttpResponse

from audit.services import audit_record
from cases.models import Case
from segmentation.models import SegmentationRun


@dataclass(frozen=True)
class AuditedRead:
    event: str  # a key of audit.events.EVENTS
    kwarg: str  # the URL argument holding the object's primary key
    model: type[models.Model]


# URL name (with its namespace) -> what a successful GET of it records.
AUDITED_READS: dict[str, AuditedRead] = {
    "case-detail": AuditedRead("case.viewed", "case_id", Case),
    "api:case-detail": AuditedRead("case.viewed", "case_id", Case),
    "case-report": AuditedRead("report.viewed", "case_id", Case),
    "case-slice": AuditedRead("image.downloaded", "case_id", Case),
    "case-pixels": AuditedRead("image.downloaded", "case_id", Case),  # the viewer's full-precision slice
    "case-mask": AuditedRead("mask.downloaded", "case_id", Case),
    "case-mask-version": AuditedRead("mask.downloaded", "case_id", Case),
    "api:case-mask-version": AuditedRead("mask.downloaded", "case_id", Case),
    "api:case-mask-version-dicom": AuditedRead("mask.downloaded", "case_id", Case),
    "api:case-mask-dicom": AuditedRead("mask.downloaded", "case_id", Case),
    "run-mask": AuditedRead("mask.downloaded", "run_id", SegmentationRun),
    "run-probability": AuditedRead("mask.downloaded", "run_id", SegmentationRun),  # the heat-map's map
    "api:segmentation-file": AuditedRead("mask.downloaded", "run_id", SegmentationRun),
    "api:case-other-region": AuditedRead("mask.downloaded", "case_id", Case),  # a region of the map
    "api:segmentation-dicom": AuditedRead("mask.downloaded", "run_id", SegmentationRun),
}

_PART_OF_THE_CASE_PAGE = (
    "part of the case page (audited as case.viewed) and shows no more than it; an entry for each of its "
    "fetches would flood the trail"
)
_LIST = (
    "a list: what it shows of a case is on that case's audited page; an entry per listing would flood "
    "the trail"
)
_WRITE = "a write (or its form): the service that makes the change records it"
_SIGN_IN = "signing in and out: sign-ins and refused ones are audited from Django's auth signals"
_NO_PATIENT_DATA = "shows no patient data"

# URL name -> why a GET of it is not recorded.
NOT_AUDITED: dict[str, str] = {
    "healthz": _NO_PATIENT_DATA,
    "healthz-live": _NO_PATIENT_DATA,
    "healthz-ready": _NO_PATIENT_DATA,
    # django.contrib.auth's pages
    "login": _SIGN_IN,
    "logout": _SIGN_IN,
    "password_change": _SIGN_IN,
    "password_change_done": _SIGN_IN,
    "password_reset": _SIGN_IN,
    "password_reset_done": _SIGN_IN,
    "password_reset_confirm": _SIGN_IN,
    "password_reset_complete": _SIGN_IN,
    # the pages
    "case-list": _LIST,
    "patient-list": _LIST,
    "patient-detail": _LIST + " (a patient's cases, as thumbnails and their outlines' areas)",
    "diagnosis-list": _LIST + " (the catalogue)",
    "diagnosis-detail": _LIST + " (the cases linked to one catalogue entry)",
    "case-state": _PART_OF_THE_CASE_PAGE + " (the viewer's state, polled while the case is processed)",
    "case-thumbnail": _PART_OF_THE_CASE_PAGE + " (and of the lists)",
    "case-overlay": _PART_OF_THE_CASE_PAGE + " (the outline drawn over the slice, not the mask file)",
    "case-similar": _PART_OF_THE_CASE_PAGE + " (the similar-cases fragment)",
    "case-best-mask": "the outline the correction page starts from, drawn on it; the masks' downloads are "
    "audited (case-mask, run-mask) and so is the full image the page shows (case-slice)",
    "case-other-region": "part of the correction page: a region of the primary run's probability map, "
    "shown small and drawn on its canvas; the map's download is audited (run-probability)",
    "upload": _WRITE + " (case.uploaded)",
    "case-correct": _WRITE + " (mask.corrected); the image it shows is fetched from case-slice, audited",
    "case-mask-restore": _WRITE + " (mask.restored)",
    "case-tumour-type": _WRITE + " (type.recorded)",
    "case-diagnosis-add": _WRITE + " (diagnosis.added)",
    "case-diagnosis-remove": _WRITE + " (diagnosis.removed)",
    "run-review": _WRITE + " (run.validated, run.rejected)",
    "diagnosis-rename": _WRITE + " (catalogue.renamed)",
    "diagnosis-retire": _WRITE + " (catalogue.retired)",
    "diagnosis-merge": _WRITE + " (catalogue.merged)",
    # the API
    "api:auth-token": "a sign-in: the token view records auth.signed_in, Django's signal a refused one",
    "api:case-list": _LIST + " (the API's)",
    "api:diagnosis-list": _LIST + " (the API's catalogue)",
    "api:case-thumbnail": _PART_OF_THE_CASE_PAGE + " (the API's thumbnail)",
    "api:case-similar": "the similar cases: ids, types and scores of other cases, each of which is audited "
    "when opened; the query case's own detail is audited",
    "api:case-other-regions": _LIST + " (a case's other regions: rank, probability, area; each download "
    "is audited)",
    "api:case-masks": _LIST + " (a case's mask versions: who, when, area; each download is audited)",
    "api:case-mask-restore": _WRITE + " (mask.restored)",
    "api:case-diagnoses": _WRITE + " (diagnosis.added)",
    "api:case-diagnosis": _WRITE + " (diagnosis.removed)",
    "api:segmentation-review": _WRITE + " (run.validated, run.rejected)",
    "api:schema": _NO_PATIENT_DATA + " (the OpenAPI schema)",
    "api:docs": _NO_PATIENT_DATA + " (Swagger UI)",
    "api:no-endpoint": _NO_PATIENT_DATA + " (a 404 for any other address under /api/)",
    # DICOMweb
    "dicomweb-studies": _WRITE + " (case.uploaded, one per case: STOW-RS stores, it retrieves nothing)",
}

# URL namespaces whose every route is left out, and why.
NOT_AUDITED_NAMESPACES: dict[str, str] = {
    "admin": "the staff's Django admin: user, role and model-version management, and the audit trail "
    "itself; staff sign-ins there are audited like any other",
}


class AuditAccessMiddleware:
    """Records a successful GET of a route in ``AUDITED_READS``, once the view has answered.

    After ``audit.middleware.AuditMiddleware`` (the address) and after the view, so that the actor of an
    API request is the user DRF authenticated from its token (DRF sets it on the Django request too).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if request.method == "GET" and 200 <= response.status_code < 300 and match is not None:
            read = AUDITED_READS.get(match.view_name)
            if read is not None:
                _record(request, read, match.view_name, match.kwargs)
        return response


def _record(request: HttpRequest, read: AuditedRead, route: str, kwargs: dict) -> None:
    pk = kwargs[read.kwarg]
    detail = {"route": route, **{name: value for name, value in kwargs.items() if name != read.kwarg}}
    obj = read.model._default_manager.filter(pk=pk).first()
    if obj is None:  # deleted between the answer and now: the entry keeps its id
        audit_record(
            event=read.event,
            model=read.model,
            object_repr=f"{read.model._meta.verbose_name} {pk}",
            user=request.user,
            detail={**detail, "object_pk": pk},
        )
        return
    audit_record(event=read.event, obj=obj, user=request.user, detail=detail)

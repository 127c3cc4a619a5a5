"""Mask downloads that the pages and the API serve alike: the DICOM Segmentation of a DICOM case."""

from __future__ import annotations

import numpy as np
from django.http import Http404, HttpResponse

from cases import rendering
from cases.dicom_out import DicomExportError, MaskOrigin
from cases.models import Case

DICOM_CONTENT_TYPE = "application/dicom"  # PS3.18 section 8.7.3: a DICOM Part 10 file


def mask_segmentation_download(
    case: Case, mask: np.ndarray | None, *, origin: MaskOrigin, filename: str
) -> HttpResponse:
    """The mask as a DICOM Segmentation of the case's stored DICOM, as a download; a 404 that says why
    when there is no mask or the case's scan is not DICOM (the API answers it as a problem)."""
    if mask is None:
        raise Http404("This mask does not exist (yet).")
    try:
        data = rendering.case_mask_segmentation_bytes(case, mask, origin)
    except DicomExportError as exc:
        raise Http404(str(exc)) from exc
    response = HttpResponse(data, content_type=DICOM_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response

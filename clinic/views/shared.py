"""What several page groups share: a case or a 404, a searched list's page, and the PNG / NIfTI / DICOM
responses of the pictures."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from cases import rendering
from cases.dicom_out import MaskOrigin
from cases.models import Case
from cases.selectors import case_get
from clinic.downloads import mask_segmentation_download


def case_or_404(case_id: int) -> Case:
    case = case_get(case_id=case_id)
    if case is None:
        raise Http404("No such case.")
    return case


def searched_page(
    request: HttpRequest, search: Callable[..., QuerySet], *, per_page: int
) -> tuple[Page, str]:
    """A list page's ``?page=`` of what ``search(q=...)`` finds for its ``?q=``, and that ``q``."""
    q = request.GET.get("q", "").strip()
    return Paginator(search(q=q), per_page).get_page(request.GET.get("page")), q


def png_response(data: bytes, *, filename: str | None = None, max_age: int = 0) -> HttpResponse:
    """A PNG for the browser: private, cached ``max_age`` seconds (else revalidated), a download if named."""
    response = HttpResponse(data, content_type="image/png")
    if filename:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = f"private, max-age={max_age}" if max_age else "private, no-cache"
    return response


def mask_download(
    case: Case, mask: np.ndarray | None, *, stem: str, fmt: str, origin: MaskOrigin
) -> HttpResponse:
    """The mask as a 0/255 PNG, a gzipped NIfTI (with the slice's geometry when the scan has one) or, for
    a DICOM case, a DICOM Segmentation that says ``origin`` made it; a 404 that says why otherwise."""
    if mask is None:
        raise Http404("This mask does not exist (yet).")
    if fmt == "png":
        return png_response(rendering.mask_png_bytes(mask), filename=f"{stem}.png")
    if fmt == "dcm":
        return mask_segmentation_download(case, mask, origin=origin, filename=f"{stem}_seg.dcm")
    geometry = rendering.case_slice_geometry(case)
    response = HttpResponse(rendering.mask_nifti_bytes(mask, geometry), content_type="application/gzip")
    response["Content-Disposition"] = f'attachment; filename="{stem}.nii.gz"'
    return response

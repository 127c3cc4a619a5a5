"""The pictures and downloads the pages show: the slice, thumbnails, overlays and the case's masks."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import etag

from cases import rendering
from cases.selectors import case_ground_truth_mask
from clinic.browse import case_best_mask, case_pictures_changed
from clinic.permissions import role_required
from clinic.views.shared import case_or_404, mask_download, png_response
from segmentation.selectors import load_mask


@role_required("cases.view_case")
def case_slice_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    return png_response(rendering.png_bytes(rendering.slice_uint8(case)), max_age=3600)


def _case_pictures_etag(request: HttpRequest, case_id: int, **kwargs) -> str | None:
    """Changes whenever what a case's pictures show can change: the case row (its mask, its type), a run
    finishing, or a review. Lists revalidate their thumbnails cheaply instead of redrawing them."""
    changed = case_pictures_changed(case_id)
    if changed is None:
        return None
    return "-".join(f"{moment.timestamp():.6f}" if moment else "0" for moment in changed)


@role_required("cases.view_case")
@etag(_case_pictures_etag)
def case_thumbnail_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """A small picture of the slice with the case's best outline (for lists and the similar-cases panel);
    a rejected AI mask is never drawn."""
    case = case_or_404(case_id)
    picture = rendering.thumbnail(rendering.slice_uint8(case), case_best_mask(case))
    return png_response(rendering.png_bytes(picture))


@role_required("cases.view_case")
@etag(_case_pictures_etag)
def case_overlay_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The full-size slice with one outline filled in: ``?run=<id>`` for an AI mask, else the best one."""
    case = case_or_404(case_id)
    run_id = request.GET.get("run", "")
    if run_id.isdigit():
        mask = load_mask(get_object_or_404(case.segmentation_runs, pk=int(run_id)))
    else:
        mask = case_best_mask(case)
    return png_response(
        rendering.png_bytes(rendering.overlay(rendering.slice_uint8(case), mask, filled=True))
    )


@role_required("cases.view_case")
def case_mask_view(request: HttpRequest, case_id: int, fmt: str) -> HttpResponse:
    """The case's ground-truth mask (the version in use: imported, corrected or restored) as PNG or NIfTI;
    every version has its own address (``case-mask-version``)."""
    case = case_or_404(case_id)
    version = f"_v{case.mask_version.number}" if case.mask_version else ""
    stem = f"case{case.pk}_{case.mask_source or 'mask'}_mask{version}"
    return mask_download(case, case_ground_truth_mask(case=case), stem=stem, fmt=fmt)


@role_required("cases.view_case")
def case_best_mask_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The outline the correction page starts from: ground truth, else a validated or the primary AI mask
    (never a rejected one: such a case starts from an empty canvas)."""
    mask = case_best_mask(case_or_404(case_id))
    if mask is None:
        raise Http404("This case has no mask yet.")
    return png_response(rendering.mask_png_bytes(mask))

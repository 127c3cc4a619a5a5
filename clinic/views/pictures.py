"""The pictures and downloads the pages show: the slice (as a picture and at full precision for the
viewer), thumbnails, overlays, the case's masks and the runs' probability maps."""

from __future__ import annotations

import json

import numpy as np
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import etag

from cases import rendering
from cases.models import Case
from cases.selectors import case_ground_truth_mask, scan_read
from clinic.browse import case_best_mask, case_other_regions, case_pictures_changed
from clinic.permissions import role_required
from clinic.views.shared import case_or_404, mask_download, png_response
from recommender.services import case_outline_run
from segmentation.models import RunStatus
from segmentation.selectors import load_mask
from segmentation.services import primary_model_version


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
    """The case's ground-truth mask (the version in use: imported, corrected or restored) as PNG, NIfTI or
    (a DICOM case) DICOM Segmentation; every version has its own address (``case-mask-version``)."""
    case = case_or_404(case_id)
    version = f"_v{case.mask_version.number}" if case.mask_version else ""
    stem = f"case{case.pk}_{case.mask_source or 'mask'}_mask{version}"
    mask = case_ground_truth_mask(case=case)
    origin = rendering.mask_version_origin(case.mask_version)
    return mask_download(case, mask, stem=stem, fmt=fmt, origin=origin)


@role_required("cases.view_case")
def case_best_mask_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The outline the correction page starts from: ground truth, else a validated or the primary AI mask
    (never a rejected one: such a case starts from an empty canvas)."""
    mask = case_best_mask(case_or_404(case_id))
    if mask is None:
        raise Http404("This case has no mask yet.")
    return png_response(rendering.mask_png_bytes(mask))


@role_required("cases.view_case")
def case_other_region_view(request: HttpRequest, case_id: int, rank: int) -> HttpResponse:
    """Region ``rank`` (1: the highest peak) of those the primary model saw but left out of its mask, as a
    0/255 PNG the correction page can start from (``clinic.browse.case_other_regions``)."""
    regions = case_other_regions(case_or_404(case_id))
    if not 1 <= rank <= len(regions):
        raise Http404("The models saw no such other region in this case.")
    return png_response(rendering.mask_png_bytes(regions[rank - 1].mask))


# The brain window of CT (PS3.3 has none; the radiologists' usual one, in HU): level 40, width 80.
CT_BRAIN_WINDOW = (40.0, 80.0)
# MR values have no fixed unit, so its "brain" window is the 1st to 99th percentile of the head's pixels.
MR_BRAIN_PERCENTILES = (1.0, 99.0)


@role_required("cases.view_case")
def case_pixels_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The slice at full precision for the viewer's window/level: little-endian float32, row by row, in the
    stored units (DICOM: after the modality LUT, before any window). The headers say how to read it:
    ``X-Width``/``X-Height``, ``X-Value-Range`` (min max), ``X-Units``, ``X-Invert`` (1 for MONOCHROME1:
    low values shown white) and ``X-Windows``, a JSON list of {label, center, width} presets: the DICOM
    header's windows, then the full range and a brain window."""
    case = case_or_404(case_id)
    image = scan_read(scan=case.scan)
    values = image.stored_values if image.stored_values is not None else image.pixels
    values = np.ascontiguousarray(values, dtype="<f4")
    response = HttpResponse(values.tobytes(), content_type="application/octet-stream")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Width"], response["X-Height"] = str(values.shape[1]), str(values.shape[0])
    response["X-Value-Range"] = f"{float(values.min()):.9g} {float(values.max()):.9g}"
    response["X-Units"] = pixel_units(image.metadata, image.format)
    response["X-Invert"] = "1" if image.metadata.get("PhotometricInterpretation") == "MONOCHROME1" else "0"
    response["X-Windows"] = json.dumps(window_presets(values, image.metadata))
    return response


def pixel_units(metadata: dict, fmt: str) -> str:
    """What the values are: Hounsfield units for CT (PS3.3 C.11.1.1.2: a rescaled CT image is in HU), else
    the file's own values."""
    if fmt != "dicom":
        return "grey level"
    if metadata.get("Modality") == "CT" and "RescaleIntercept" in metadata:
        return "HU"
    return "stored value"


def window_presets(values: np.ndarray, metadata: dict) -> list[dict]:
    """The window/level presets: every window of the DICOM header (WindowCenter/WindowWidth, PS3.3
    C.11.2.1.2; one per value when multi-valued), the full range of the slice, and a brain window (CT's
    usual level 40 / width 80 HU, else the 1st-99th percentile of the pixels above the background)."""
    presets = []
    centers, widths = metadata.get("WindowCenter"), metadata.get("WindowWidth")
    if centers is not None and widths is not None:
        centers = centers if isinstance(centers, list) else [centers]
        widths = widths if isinstance(widths, list) else [widths]
        for n, (center, width) in enumerate(zip(centers, widths, strict=False), 1):
            label = "DICOM window" if n == 1 else f"DICOM window {n}"
            presets.append({"label": label, "center": float(center), "width": float(width)})
    low, high = float(values.min()), float(values.max())
    presets.append({"label": "Full range", **_window_between(low, high)})
    if pixel_units(metadata, "dicom") == "HU":
        presets.append({"label": "Brain", "center": CT_BRAIN_WINDOW[0], "width": CT_BRAIN_WINDOW[1]})
    else:
        head = values[values > low]
        if head.size:
            presets.append({"label": "Brain", **_window_between(*np.percentile(head, MR_BRAIN_PERCENTILES))})
    return presets


def _window_between(low: float, high: float) -> dict:
    """The linear window (PS3.3 C.11.2.1.2.1) that shows ``low`` black and ``high`` white:
    c - 0.5 - (w - 1)/2 = low and c - 0.5 + (w - 1)/2 = high."""
    width = max(float(high) - float(low), 0.0) + 1.0
    return {"center": (float(low) + float(high)) / 2 + 0.5, "width": width}


@role_required("cases.view_case")
def run_probability_view(request: HttpRequest, case_id: int, run_id: int) -> HttpResponse:
    """A run's probability map as the stored 8-bit grayscale PNG (value = round(255 x probability)), for
    the viewer's heat-map."""
    run = get_object_or_404(case_or_404(case_id).segmentation_runs, pk=run_id)
    if not run.probability_file:
        raise Http404("This run has no probability map (yet).")
    with run.probability_file.open("rb") as fh:
        return png_response(fh.read(), max_age=3600)


def viewer_slice(case) -> dict:
    """One entry of the viewer's slice list (the ``viewer-slices`` JSON of the case page): where its
    pixels, best outline (null when it has none) and the primary model's probability map are, and its
    pixel spacing in mm (row = between rows, col = between columns; null when unknown)."""
    return viewer_slices([case])[0]


def viewer_slices(cases) -> list[dict]:
    """``viewer_slice`` of each case, in the order given, in a few queries whatever their number (a study
    may hold hundreds of slices): the primary model, the cases and all their runs, fetched once."""
    ids = [case.pk for case in cases]
    primary = primary_model_version()
    primary_id = primary.pk if primary else None
    # Read afresh (not prefetched onto the caller's objects, whose runs would then go stale).
    found = Case.objects.filter(pk__in=ids).select_related("scan").prefetch_related("segmentation_runs")
    by_id = {case.pk: case for case in found}
    entries = []
    for case in (by_id[pk] for pk in ids):
        runs = list(case.segmentation_runs.all())
        # The outline case-best-mask serves: a ground truth, else an AI mask that was not rejected.
        has_outline = bool(case.ground_truth_mask) or (
            case_outline_run([r for r in runs if r.mask_file], primary_id) is not None
        )
        probability = next(
            (
                r
                for r in runs
                if r.model_version_id == primary_id and r.status == RunStatus.DONE and r.probability_file
            ),
            None,
        )
        entries.append(
            {
                "case_id": case.pk,
                "label": f"Case {case.pk}",
                "pixels": reverse("case-pixels", args=[case.pk]),
                "mask": reverse("case-best-mask", args=[case.pk]) if has_outline else None,
                "probability": reverse("run-probability", args=[case.pk, probability.pk])
                if probability
                else None,
                "spacing": {"row": case.scan.pixel_spacing_mm, "col": case.scan.pixel_spacing_col_mm},
                "width": case.scan.width,
                "height": case.scan.height,
            }
        )
    return entries

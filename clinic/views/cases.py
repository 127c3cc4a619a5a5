"""The clinician's HTML pages for cases and patients, and the pictures and downloads they show.

Thin: reads come from ``clinic.browse`` / ``cases.selectors`` / the other apps' selectors, writes go to
``cases.review`` and the apps' services. Every page needs a signed-in user.
"""

from __future__ import annotations

import base64
import binascii

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import etag, require_POST

from cases import rendering
from clinic.browse import (
    STATUS_FILTERS,
    case_area,
    case_best_mask,
    case_search,
    case_status,
    mask_state,
    similar_rows,
)
from cases.models import Case, MaskSource, Patient, TumourType
from cases.review import case_mask_correct, case_tumour_type_set
from cases.selectors import case_get, case_ground_truth_mask, case_type_sources_summary

CASES_PER_PAGE = 20
SIMILAR_K = 6


def case_or_404(case_id: int) -> Case:
    case = case_get(case_id=case_id)
    if case is None:
        raise Http404("No such case.")
    return case


def _png(data: bytes, *, filename: str | None = None, max_age: int = 0) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    if filename:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = f"private, max-age={max_age}" if max_age else "private, no-cache"
    return response


def mask_download(case: Case, mask, *, stem: str, fmt: str) -> HttpResponse:
    """The mask as a 0/255 PNG or a gzipped NIfTI (with the pixel spacing when the scan has one)."""
    if mask is None:
        raise Http404("This mask does not exist (yet).")
    if fmt == "png":
        return _png(rendering.mask_png_bytes(mask), filename=f"{stem}.png")
    spacing = (case.scan.pixel_spacing_mm, case.scan.pixel_spacing_col_mm)
    response = HttpResponse(rendering.mask_nifti_bytes(mask, spacing), content_type="application/gzip")
    response["Content-Disposition"] = f'attachment; filename="{stem}.nii.gz"'
    return response


# === Lists ===


@login_required
def case_list_view(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    tumour_type = request.GET.get("tumour_type", "")
    tumour_type = tumour_type if tumour_type in TumourType.values else ""
    status = request.GET.get("status", "")
    status = status if status in STATUS_FILTERS else ""
    page = Paginator(case_search(q=q, tumour_type=tumour_type, status=status), CASES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = [
        {
            "case": c,
            "state": mask_state(c, c.segmentation_runs.all()),
            "status": case_status(c.segmentation_runs.all()),
            "diagnoses": [cd.diagnosis.name for cd in c.case_diagnoses.all()],
        }
        for c in page
    ]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "cases/case_list.html",
        {
            "page": page,
            "rows": rows,
            "q": q,
            "tumour_type": tumour_type,
            "status": status,
            "tumour_types": TumourType.choices,
            "statuses": STATUS_FILTERS.items(),
            "query": query.urlencode(),
        },
    )


@login_required
def upload_view(request: HttpRequest) -> HttpResponse:
    return render(request, "cases/upload.html", {"tumour_types": TumourType.choices})


@login_required
def patient_list_view(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    patients = Patient.objects.annotate(n_cases=Count("cases"), last_case=Max("cases__created_at"))
    if q:
        patients = patients.filter(identifier__icontains=q)
    page = Paginator(patients.order_by("-last_case", "identifier"), 50).get_page(request.GET.get("page"))
    return render(request, "cases/patient_list.html", {"page": page, "q": q})


@login_required
def patient_detail_view(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = get_object_or_404(Patient, pk=patient_id)
    timeline = []
    for case in (
        patient.cases.select_related("scan")
        .prefetch_related("segmentation_runs", "case_diagnoses__diagnosis")
        .order_by("created_at", "id")
    ):
        runs = list(case.segmentation_runs.all())
        timeline.append(
            {
                "case": case,
                "state": mask_state(case, runs),
                "status": case_status(runs),
                "area": case_area(case, case_best_mask(case)),
                "diagnoses": [cd.diagnosis.name for cd in case.case_diagnoses.all()],
            }
        )
    return render(
        request,
        "cases/patient_detail.html",
        {"patient": patient, "timeline": timeline, "chart": _area_chart(timeline)},
    )


def _area_chart(timeline: list[dict]) -> dict | None:
    """Bars of the tumour area per case, in mm² when every measured case has a spacing, else in pixels."""
    measured = [row for row in timeline if row["area"]["area_px"] is not None]
    if not measured:
        return None
    in_mm2 = all(row["area"]["area_mm2"] is not None for row in measured)
    values = [row["area"]["area_mm2" if in_mm2 else "area_px"] for row in measured]
    top = max(values) or 1
    return {
        "unit": "mm²" if in_mm2 else "pixels",
        "bars": [
            {
                "case_id": row["case"].pk,
                "date": row["case"].created_at,
                "value": value,
                "percent": round(100 * value / top, 1),
            }
            for row, value in zip(measured, values)
        ],
    }


# === One case ===


@login_required
def case_detail_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    runs = list(case.segmentation_runs.select_related("model_version"))
    return render(
        request,
        "cases/case_detail.html",
        {
            "case": case,
            "state": mask_state(case, runs),
            "tumour_types": TumourType.choices,
            "diagnoses": case.case_diagnoses.select_related("diagnosis", "recorded_by").order_by(
                "recorded_at"
            ),
            "has_ground_truth": bool(case.ground_truth_mask),
            "type_sources": case_type_sources_summary(case=case),
        },
    )


@login_required
def case_state_view(request: HttpRequest, case_id: int) -> JsonResponse:
    """The API's case detail plus what the viewer needs: reviewers, mask URLs of this site, the mask state."""
    from cases.apis import CaseDetailApi

    case = case_or_404(case_id)
    data = CaseDetailApi.OutputSerializer(case, context={"request": request}).data
    runs = {r.pk: r for r in case.segmentation_runs.select_related("reviewed_by")}
    for seg in data["segmentations"]:
        run = runs[seg["id"]]
        seg["reviewed_by"] = run.reviewed_by.get_username() if run.reviewed_by else None
        seg["reviewed_at"] = run.reviewed_at.isoformat() if run.reviewed_at else None
        seg["review_label"] = run.get_review_status_display()
        seg["mask_png"] = reverse("run-mask", args=[case.pk, run.pk, "png"]) if run.mask_file else None
        seg["mask_nifti"] = reverse("run-mask", args=[case.pk, run.pk, "nii.gz"]) if run.mask_file else None
        seg["review_url"] = reverse("run-review", args=[run.pk])
    state = mask_state(case, runs.values())
    data["status"] = case_status(runs.values())  # "none" rather than the API's "queued" when nothing ran
    data["mask_state"] = {"code": state.code, "label": state.label}
    data["spacing_known"] = bool(case.scan.pixel_spacing_mm)
    data["type_sources"] = case_type_sources_summary(case=case)
    data["ground_truth"] = None
    if case.ground_truth_mask:
        gt = case_ground_truth_mask(case=case)
        data["ground_truth"] = {
            "source": case.mask_source,
            "label": case.get_mask_source_display(),
            "updated_by": case.mask_updated_by.get_username() if case.mask_updated_by else None,
            "updated_at": case.mask_updated_at.isoformat() if case.mask_updated_at else None,
            "mask_png": reverse("case-mask", args=[case.pk, "png"]),
            "mask_nifti": reverse("case-mask", args=[case.pk, "nii.gz"]),
            **case_area(case, gt),
        }
    return JsonResponse(data)


@login_required
def case_slice_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    return _png(rendering.png_bytes(rendering.slice_uint8(case)), max_age=3600)


def _case_pictures_etag(request: HttpRequest, case_id: int, **kwargs) -> str | None:
    """Changes whenever what a case's pictures show can change: the case row (its mask, its type), a run
    finishing, or a review. Lists revalidate their thumbnails cheaply instead of redrawing them."""
    row = (
        Case.objects.filter(pk=case_id)
        .annotate(
            last_run=Max("segmentation_runs__finished_at"),
            last_review=Max("segmentation_runs__reviewed_at"),
        )
        .values_list("updated_at", "last_run", "last_review")
        .first()
    )
    if row is None:
        return None
    return "-".join(f"{moment.timestamp():.6f}" if moment else "0" for moment in row)


@login_required
@etag(_case_pictures_etag)
def case_thumbnail_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """A small picture of the slice with the case's best outline (for lists and the similar-cases panel)."""
    case = case_or_404(case_id)
    return _png(rendering.png_bytes(rendering.thumbnail(rendering.slice_uint8(case), case_best_mask(case))))


@login_required
@etag(_case_pictures_etag)
def case_overlay_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The full-size slice with one outline filled in: ``?run=<id>`` for an AI mask, else the best one."""
    from segmentation.services import load_mask

    case = case_or_404(case_id)
    run_id = request.GET.get("run", "")
    if run_id.isdigit():
        run = get_object_or_404(case.segmentation_runs, pk=int(run_id))
        mask = load_mask(run)
    else:
        mask = case_best_mask(case)
    return _png(rendering.png_bytes(rendering.overlay(rendering.slice_uint8(case), mask, filled=True)))


@login_required
def case_mask_view(request: HttpRequest, case_id: int, fmt: str) -> HttpResponse:
    """The case's ground-truth mask (imported or corrected) as PNG or NIfTI."""
    case = case_or_404(case_id)
    stem = f"case{case.pk}_{case.mask_source or 'mask'}_mask"
    return mask_download(case, case_ground_truth_mask(case=case), stem=stem, fmt=fmt)


@login_required
def case_best_mask_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The outline the correction page starts from: ground truth, else a validated or the primary AI mask."""
    case = case_or_404(case_id)
    mask = case_best_mask(case)
    if mask is None:
        raise Http404("This case has no mask yet.")
    return _png(rendering.mask_png_bytes(mask))


@login_required
def case_correct_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """GET: brush and eraser over the slice. POST ``mask`` (a PNG data URL): save it as the ground truth."""
    case = case_or_404(case_id)
    if request.method == "POST":
        try:
            mask = rendering.mask_from_png_data(
                _data_url_bytes(request.POST.get("mask", "")), (case.scan.height, case.scan.width)
            )
            case_mask_correct(case=case, mask=mask, user=request.user)
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect("case-correct", case_id=case.pk)
        messages.success(
            request,
            "Corrected mask saved. It is now this case's validated ground truth; the AI masks are kept.",
        )
        return redirect("case-detail", case_id=case.pk)
    runs = case.segmentation_runs.filter(status="done").exclude(mask_file="")
    return render(
        request,
        "cases/case_correct.html",
        {
            "case": case,
            "has_start_mask": bool(case.ground_truth_mask) or runs.exists(),
        },
    )


def _data_url_bytes(value: str) -> bytes:
    prefix = "data:image/png;base64,"
    if not value.startswith(prefix):
        raise ValueError("No corrected mask was sent: draw on the slice, then save.")
    try:
        return base64.b64decode(value[len(prefix) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("The corrected mask was damaged on the way; please save again.") from exc


@login_required
@require_POST
def case_tumour_type_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    try:
        case_tumour_type_set(case=case, tumour_type=request.POST.get("tumour_type", ""), user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Tumour type recorded: {case.get_tumour_type_display()}.")
    return redirect(reverse("case-detail", args=[case.pk]) + "#tumour-type")


@login_required
def case_similar_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The similar-cases panel as an HTML fragment; ``X-Similar-Status: pending`` until the case is
    described for the search (ranking and "why" come from recommender.selectors)."""
    from recommender.selectors import query_for_case, similar_for_query

    case = case_or_404(case_id)
    query = query_for_case(case)
    rows = similar_rows(similar_for_query(query, k=SIMILAR_K)) if query is not None else []
    response = render(request, "cases/_similar_cases.html", {"rows": rows, "pending": query is None})
    response["X-Similar-Status"] = "pending" if query is None else "ready"
    return response


@login_required
def case_report_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """A printable summary: the slice and outlines, measurements, the models, similar cases, diagnoses."""
    from recommender.selectors import similar_cases

    case = case_or_404(case_id)
    runs = list(case.segmentation_runs.select_related("model_version", "reviewed_by"))
    best = case_best_mask(case)
    return render(
        request,
        "cases/case_report.html",
        {
            "case": case,
            "runs": runs,
            "state": mask_state(case, runs),
            "area": case_area(case, best),
            "has_mask": best is not None,
            "similar": similar_rows(similar_cases(case=case, k=5)),
            "diagnoses": case.case_diagnoses.select_related("diagnosis", "recorded_by").order_by(
                "recorded_at"
            ),
            "corrected": case.mask_source == MaskSource.CORRECTED,
            "type_sources": case_type_sources_summary(case=case),
        },
    )

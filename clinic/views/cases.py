"""The case pages: the list, the upload page, one case (its viewer state, correction, tumour type,
similar cases) and its printable report.

Thin: reads come from ``clinic.browse`` and the apps' selectors, writes go to the apps' services.
"""

from __future__ import annotations

import base64
import binascii

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from cases import rendering
from cases.models import ScanFormat, TumourType
from cases.review import case_mask_correct, case_tumour_type_set
from cases.revisions import CaseEditConflict, revision_from_form
from cases.selectors import case_ground_truth_mask, case_type_sources_summary, study_slices
from clinic.api.cases import CaseDetailApi
from clinic.browse import (
    STATUS_FILTERS,
    case_area,
    case_best_mask,
    case_diagnoses,
    case_has_outline_to_start_from,
    case_other_regions,
    case_search,
    case_status,
    mask_history,
    mask_state,
    similar_rows,
)
from clinic.permissions import role_required
from clinic.views.pictures import viewer_slices
from clinic.views.shared import case_or_404
from recommender.selectors import case_analysis, case_similar_matches
from segmentation.selectors import case_runs
from segmentation.services import primary_model_version

CASES_PER_PAGE = 20
SIMILAR_K = 6
SIMILAR_IN_REPORT = 5


# === Lists ===


@role_required("cases.view_case")
def case_list_view(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    tumour_type = request.GET.get("tumour_type", "")
    tumour_type = tumour_type if tumour_type in TumourType.values else ""
    status = request.GET.get("status", "")
    status = status if status in STATUS_FILTERS else ""
    page = Paginator(case_search(q=q, tumour_type=tumour_type, status=status), CASES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    primary = primary_model_version()
    rows = [
        {
            "case": c,
            "state": mask_state(c, c.segmentation_runs.all(), primary_id=primary.pk if primary else None),
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


@role_required("cases.add_case")
def upload_view(request: HttpRequest) -> HttpResponse:
    return render(request, "cases/upload.html", {"tumour_types": TumourType.choices})


# === One case ===


@role_required("cases.view_case")
def case_detail_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    return render(
        request,
        "cases/case_detail.html",
        {
            "case": case,
            "state": mask_state(case, case_runs(case=case)),
            "tumour_types": TumourType.choices,
            "diagnoses": case_diagnoses(case),
            "has_ground_truth": bool(case.ground_truth_mask),
            "type_sources": case_type_sources_summary(case=case),
            "mask_history": mask_history(case),
            "analysis": case_analysis(case),
            "viewer_slices": _study_viewer_slices(case),
        },
    )


def _study_viewer_slices(case) -> list[dict] | None:
    """The viewer's slice list when the case is one slice of a study of several: every slice of the study,
    in slice order, for the clinician to scroll through (static/js/viewer.js); None for a study of one."""
    if case.study_id is None:
        return None
    cases = list(study_slices(study_id=case.study_id))
    if len(cases) < 2:
        return None
    slices = viewer_slices(cases)  # a few queries whatever the study's length
    for entry in slices:
        entry["label"] = f"case {entry['case_id']}"  # the viewer shows "Slice n of N (case id)"
    return slices


@role_required("cases.view_case")
def case_state_view(request: HttpRequest, case_id: int) -> JsonResponse:
    """The API's case detail plus what the viewer needs: reviewers, mask URLs of this site, the mask state."""
    case = case_or_404(case_id)
    data = CaseDetailApi.OutputSerializer(case, context={"request": request}).data
    runs = {r.pk: r for r in case_runs(case=case).select_related("reviewed_by")}
    dicom = case.scan.format == ScanFormat.DICOM  # a DICOM Segmentation needs a DICOM source
    for seg in data["segmentations"]:
        run = runs[seg["id"]]
        seg["reviewed_by"] = run.reviewed_by.get_username() if run.reviewed_by else None
        seg["reviewed_at"] = run.reviewed_at.isoformat() if run.reviewed_at else None
        seg["review_label"] = run.get_review_status_display()
        seg["mask_png"] = reverse("run-mask", args=[case.pk, run.pk, "png"]) if run.mask_file else None
        seg["mask_nifti"] = reverse("run-mask", args=[case.pk, run.pk, "nii.gz"]) if run.mask_file else None
        seg["mask_dicom"] = (
            reverse("run-mask", args=[case.pk, run.pk, "dcm"]) if run.mask_file and dicom else None
        )
        seg["review_url"] = reverse("run-review", args=[run.pk])
    state = mask_state(case, runs.values())
    data["status"] = case_status(runs.values())  # "none" rather than the API's "queued" when nothing ran
    data["mask_state"] = {"code": state.code, "label": state.label}
    data["spacing_known"] = bool(case.scan.pixel_spacing_mm)
    data["type_sources"] = case_type_sources_summary(case=case)
    data["ground_truth"] = None
    if case.ground_truth_mask:
        data["ground_truth"] = {
            "source": case.mask_source,
            "label": case.get_mask_source_display(),
            "updated_by": case.mask_updated_by.get_username() if case.mask_updated_by else None,
            "updated_at": case.mask_updated_at.isoformat() if case.mask_updated_at else None,
            "mask_png": reverse("case-mask", args=[case.pk, "png"]),
            "mask_nifti": reverse("case-mask", args=[case.pk, "nii.gz"]),
            "mask_dicom": reverse("case-mask", args=[case.pk, "dcm"]) if dicom else None,
            **case_area(case, case_ground_truth_mask(case=case)),
        }
    data["can"] = _actions_allowed(request.user)
    return JsonResponse(data)


def _actions_allowed(user) -> dict[str, bool]:
    """What this user's role lets the case page offer (the views check the same permissions again)."""
    return {
        "correct": user.has_perm("cases.correct_mask"),
        "review": user.has_perm("segmentation.review_segmentationrun"),
        "set_type": user.has_perm("cases.set_tumour_type"),
        "add_diagnosis": user.has_perm("cases.add_casediagnosis"),
        "remove_diagnosis": user.has_perm("cases.delete_casediagnosis"),
    }


@role_required("cases.correct_mask")
def case_correct_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """GET: brush and eraser over the slice. POST ``mask`` (a PNG data URL): save it as the ground truth."""
    case = case_or_404(case_id)
    if request.method == "POST":
        try:
            expected = revision_from_form(request.POST.get("revision"))
            mask = rendering.mask_from_png_data(
                _data_url_bytes(request.POST.get("mask", "")), (case.scan.height, case.scan.width)
            )
            case_mask_correct(case=case, mask=mask, user=request.user, expected_revision=expected)
        except CaseEditConflict as exc:  # the case page shows what changed meanwhile
            messages.error(request, str(exc))
            return redirect("case-detail", case_id=case.pk)
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect("case-correct", case_id=case.pk)
        messages.success(
            request,
            "Corrected mask saved. It is now this case's validated ground truth; the AI masks are kept.",
        )
        return redirect("case-detail", case_id=case.pk)
    return render(
        request,
        "cases/case_correct.html",
        {
            "case": case,
            "has_start_mask": case_has_outline_to_start_from(case),
            # Each region's picture goes in the page (a small PNG): working the regions out reads the run's
            # two files, so the page does it once instead of once more per picture.
            "other_regions": [
                {
                    "rank": r.rank,
                    "peak_percent": round(100 * r.peak),
                    "likeliest": r.likeliest,
                    "area": case_area(case, r.mask),
                    "picture": "data:image/png;base64,"
                    + base64.b64encode(rendering.mask_png_bytes(r.mask)).decode("ascii"),
                }
                for r in case_other_regions(case)
            ],
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


@role_required("cases.set_tumour_type")
@require_POST
def case_tumour_type_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    try:
        case_tumour_type_set(
            case=case,
            tumour_type=request.POST.get("tumour_type", ""),
            user=request.user,
            expected_revision=revision_from_form(request.POST.get("revision")),
        )
    except (CaseEditConflict, ValueError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Tumour type recorded: {case.get_tumour_type_display()}.")
    return redirect(reverse("case-detail", args=[case.pk]) + "#tumour-type")


@role_required("cases.view_case")
def case_similar_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """The similar-cases panel as an HTML fragment; ``X-Similar-Status: pending`` until the case is
    described for the search (ranking and "why" come from recommender.selectors)."""
    case = case_or_404(case_id)
    matches, why = case_similar_matches(case, k=SIMILAR_K)
    rows = similar_rows(matches)
    response = render(request, "cases/_similar_cases.html", {"rows": rows, "why": why})
    # ready | pending | no_tumour | not_brain_mri: case.js polls while pending only
    response["X-Similar-Status"] = "ready" if why in ("suggestion", "ranked") else why
    return response


@role_required("cases.view_case")
def case_report_view(request: HttpRequest, case_id: int) -> HttpResponse:
    """A printable summary: the slice and outlines, measurements, the models, similar cases, diagnoses."""
    case = case_or_404(case_id)
    runs = list(case_runs(case=case).select_related("reviewed_by"))
    best = case_best_mask(case)
    matches, similar_why = case_similar_matches(case, k=SIMILAR_IN_REPORT)
    return render(
        request,
        "cases/case_report.html",
        {
            "case": case,
            "runs": runs,
            "state": mask_state(case, runs),
            "area": case_area(case, best),
            "has_mask": best is not None,
            "similar": similar_rows(matches),
            "similar_why": similar_why,
            "analysis": case_analysis(case),
            "diagnoses": case_diagnoses(case),
            "type_sources": case_type_sources_summary(case=case),
        },
    )

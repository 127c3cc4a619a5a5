"""HTML pages of the diagnosis catalogue, and recording or removing a diagnosis on a case."""

from __future__ import annotations

from functools import partial

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from cases.models import Diagnosis
from cases.revisions import CaseEditConflict, revision_from_form
from clinic.browse import diagnosis_cases, diagnosis_search, mask_state
from clinic.permissions import role_required
from clinic.views.shared import case_or_404, searched_page
from recommender.catalogue import diagnosis_merge_note
from recommender.services import case_diagnosis_remove, diagnosis_record

DIAGNOSES_PER_PAGE = 50
CASES_PER_PAGE = 24


@role_required("cases.add_casediagnosis")
@require_POST
def case_diagnosis_add_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    typed = " ".join(request.POST.get("name", "").split())
    try:
        diagnosis, created, matched = diagnosis_record(
            case=case,
            name=typed,
            user=request.user,
            expected_revision=revision_from_form(request.POST.get("revision")),
        )
    except CaseEditConflict as exc:
        messages.error(request, f"{exc} What you typed: “{typed}”.")
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        if created:
            messages.success(request, f"New diagnosis added to the catalogue: “{diagnosis.name}”.")
        elif matched is not None:
            messages.info(
                request,
                diagnosis_merge_note(typed=typed, recorded=matched)
                or f"“{typed}” matched the existing catalogue entry “{matched.name}”; recorded as that "
                "entry.",
            )
        else:
            messages.success(request, f"Recorded “{diagnosis.name}” (already in the catalogue).")
    return redirect(reverse("case-detail", args=[case.pk]) + "#diagnoses")


@role_required("cases.delete_casediagnosis")
@require_POST
def case_diagnosis_remove_view(request: HttpRequest, case_id: int, diagnosis_id: int) -> HttpResponse:
    case = case_or_404(case_id)
    try:
        removed = case_diagnosis_remove(
            case=case,
            diagnosis_id=diagnosis_id,
            user=request.user,
            expected_revision=revision_from_form(request.POST.get("revision")),
        )
    except (CaseEditConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect(reverse("case-detail", args=[case.pk]) + "#diagnoses")
    if removed is None:
        raise Http404("This diagnosis is not recorded on this case.")
    messages.success(request, f"Removed “{removed.name}” from this case (it stays in the catalogue).")
    return redirect(reverse("case-detail", args=[case.pk]) + "#diagnoses")


@role_required("cases.view_diagnosis")
def diagnosis_list_view(request: HttpRequest) -> HttpResponse:
    in_use = request.GET.get("in_use") == "1"  # hide the retired and merged entries
    page, q = searched_page(
        request, partial(diagnosis_search, in_use_only=in_use), per_page=DIAGNOSES_PER_PAGE
    )
    return render(request, "recommender/diagnosis_list.html", {"page": page, "q": q, "in_use": in_use})


@role_required("cases.view_diagnosis")
def diagnosis_detail_view(request: HttpRequest, diagnosis_id: int) -> HttpResponse:
    diagnosis = get_object_or_404(
        Diagnosis.objects.select_related("created_by", "first_case"), pk=diagnosis_id
    )
    page = Paginator(diagnosis_cases(diagnosis), CASES_PER_PAGE).get_page(request.GET.get("page"))
    rows = [{"case": c, "state": mask_state(c, c.segmentation_runs.all())} for c in page]
    return render(
        request, "recommender/diagnosis_detail.html", {"diagnosis": diagnosis, "page": page, "rows": rows}
    )

"""HTML actions on one segmentation run: a clinician's sign-off, and the mask downloads."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from clinic.permissions import role_required
from clinic.views.shared import mask_download
from segmentation.models import RunStatus, SegmentationRun
from segmentation.selectors import load_mask, run_mask_origin
from segmentation.services import segmentation_run_review


@role_required("segmentation.review_segmentationrun")
@require_POST
def run_review_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """``decision=validate`` or ``decision=reject``, and an optional ``reason``; the record keeps who and
    when."""
    run = get_object_or_404(SegmentationRun.objects.select_related("case", "model_version"), pk=run_id)
    decision = request.POST.get("decision")
    if decision not in ("validate", "reject"):
        messages.error(request, "Choose validate or reject.")
    elif run.status != RunStatus.DONE:
        messages.error(request, f"The {run.model_version.name} mask is not ready to review yet.")
    else:
        try:
            segmentation_run_review(
                run=run,
                user=request.user,
                validated=decision == "validate",
                reason=request.POST.get("reason", ""),
            )
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            word = "validated" if decision == "validate" else "rejected"
            messages.success(request, f"The {run.model_version.name} mask is {word}.")
    return redirect(reverse("case-detail", args=[run.case_id]) + "#models")


@role_required("segmentation.view_segmentationrun")
def run_mask_view(request: HttpRequest, case_id: int, run_id: int, fmt: str) -> HttpResponse:
    run = get_object_or_404(
        SegmentationRun.objects.select_related("case__scan", "model_version"), pk=run_id, case_id=case_id
    )
    return mask_download(
        run.case,
        load_mask(run),
        stem=f"case{case_id}_{run.model_version.name}_mask",
        fmt=fmt,
        origin=run_mask_origin(run),
    )

"""The administrators' curation of the diagnosis catalogue: rename, retire (or restore) and merge an entry.

Each is a POST from the "Curate" section of the entry's page; success and refusal alike come back to that
page with a message. The rules live in ``recommender.catalogue``.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from cases.models import Diagnosis
from clinic.permissions import role_required
from recommender.catalogue import CatalogueError, diagnosis_merge, diagnosis_rename, diagnosis_retire
from recommender.names import normalise


def _back(diagnosis: Diagnosis) -> HttpResponse:
    return redirect(reverse("diagnosis-detail", args=[diagnosis.pk]) + "#curate")


@role_required("cases.curate_diagnosis")
@require_POST
def diagnosis_rename_view(request: HttpRequest, diagnosis_id: int) -> HttpResponse:
    diagnosis = get_object_or_404(Diagnosis, pk=diagnosis_id)
    try:
        renamed = diagnosis_rename(diagnosis=diagnosis, name=request.POST.get("name", ""), user=request.user)
    except CatalogueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"“{diagnosis.name}” is now called “{renamed.name}”.")
    return _back(diagnosis)


@role_required("cases.curate_diagnosis")
@require_POST
def diagnosis_retire_view(request: HttpRequest, diagnosis_id: int) -> HttpResponse:
    """``action=retire`` or ``action=restore``."""
    diagnosis = get_object_or_404(Diagnosis, pk=diagnosis_id)
    action = request.POST.get("action", "retire")
    if action not in ("retire", "restore"):
        messages.error(request, "Choose retire or restore.")
        return _back(diagnosis)
    try:
        diagnosis_retire(diagnosis=diagnosis, user=request.user, retired=action == "retire")
    except CatalogueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"“{diagnosis.name}” is retired: it is no longer offered or recorded anew; the cases that "
            "have it keep it."
            if action == "retire"
            else f"“{diagnosis.name}” is in use again.",
        )
    return _back(diagnosis)


@role_required("cases.curate_diagnosis")
@require_POST
def diagnosis_merge_view(request: HttpRequest, diagnosis_id: int) -> HttpResponse:
    """``target``: the name of the entry that takes over this one's cases (as the autocomplete offers it)."""
    source = get_object_or_404(Diagnosis, pk=diagnosis_id)
    typed = " ".join(request.POST.get("target", "").split())
    target = Diagnosis.objects.filter(key=normalise(typed)).first() if normalise(typed) else None
    if target is None:
        messages.error(
            request,
            f"No catalogue entry is called “{typed}”: pick the entry to merge into from the suggestions."
            if typed
            else "Name the entry to merge into.",
        )
        return _back(source)
    try:
        moved = diagnosis_merge(source=source, target=target, user=request.user)
    except CatalogueError as exc:
        messages.error(request, str(exc))
        return _back(source)
    messages.success(
        request,
        f"Merged “{source.name}” into “{target.name}”: {moved} case{'' if moved == 1 else 's'} moved. "
        f"Typing “{source.name}” now records “{target.name}”.",
    )
    return redirect(reverse("diagnosis-detail", args=[target.pk]))

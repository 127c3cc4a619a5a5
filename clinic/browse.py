"""Reads behind the clinician's pages: case search, a case's mask state, its best outline and its area."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Q, QuerySet

from cases.models import Case, CaseDiagnosis, MaskSource
from cases.selectors import case_list
from recommender.names import normalise

STATUS_FILTERS = {
    "processing": "Segmenting",
    "done": "Segmented",
    "failed": "A model failed",
    "review": "Awaiting review",
    "validated": "Validated",
    "imported": "Imported",
}


def case_search(*, q: str = "", tumour_type: str = "", status: str = "") -> QuerySet[Case]:
    """Newest first. ``q`` matches the patient identifier or a recorded diagnosis (accents and case ignored)."""
    cases = case_list(tumour_type=tumour_type or None).annotate(
        n_runs=Count("segmentation_runs", distinct=True),
        n_open=Count(
            "segmentation_runs", filter=Q(segmentation_runs__status__in=["queued", "running"]), distinct=True
        ),
        n_failed=Count("segmentation_runs", filter=Q(segmentation_runs__status="failed"), distinct=True),
        n_validated=Count(
            "segmentation_runs", filter=Q(segmentation_runs__review_status="validated"), distinct=True
        ),
    )
    q = q.strip()
    if q:
        diagnosed = CaseDiagnosis.objects.filter(
            Q(diagnosis__name__icontains=q) | Q(diagnosis__key__contains=normalise(q) or q)
        ).values("case_id")
        cases = cases.filter(Q(patient__identifier__icontains=q) | Q(pk__in=diagnosed))
    corrected = Q(mask_source=MaskSource.CORRECTED)
    if status == "processing":
        cases = cases.filter(n_open__gt=0)
    elif status == "done":
        cases = cases.filter(n_runs__gt=0, n_open=0)
    elif status == "failed":
        cases = cases.filter(n_failed__gt=0)
    elif status == "review":
        cases = cases.filter(n_runs__gt=0, n_open=0, n_validated=0).exclude(corrected)
    elif status == "validated":
        cases = cases.filter(corrected | Q(n_validated__gt=0))
    elif status == "imported":
        cases = cases.filter(n_runs=0, mask_source=MaskSource.IMPORTED)
    return cases.prefetch_related("segmentation_runs__model_version", "case_diagnoses__diagnosis").order_by(
        "-created_at", "-id"
    )


@dataclass(frozen=True)
class MaskState:
    """What a clinician needs to know about the outline shown for a case."""

    code: str  # imported | corrected | validated | rejected | pending | processing | none
    label: str


def mask_state(case: Case, runs) -> MaskState:
    from segmentation.models import ReviewStatus, RunStatus

    runs = list(runs)
    if case.mask_source == MaskSource.CORRECTED:
        return MaskState("corrected", "Corrected by a clinician · validated")
    if case.mask_source == MaskSource.IMPORTED and case.ground_truth_mask:
        return MaskState("imported", "Imported ground truth")
    if any(r.review_status == ReviewStatus.VALIDATED for r in runs):
        return MaskState("validated", "AI mask validated")
    if any(r.status in (RunStatus.QUEUED, RunStatus.RUNNING) for r in runs):
        return MaskState("processing", "Segmenting…")
    done = [r for r in runs if r.status == RunStatus.DONE]
    if done and all(r.review_status == ReviewStatus.REJECTED for r in done):
        return MaskState("rejected", "AI masks rejected")
    if done:
        return MaskState("pending", "AI mask awaiting review")
    return MaskState("none", "No mask")


def case_status(runs) -> str:
    """The segmentation status for a page: "none" when nothing was run (e.g. an imported case)."""
    from segmentation.selectors import case_processing_status

    runs = list(runs)
    return case_processing_status(runs) if runs else "none"


def case_best_mask(case: Case) -> np.ndarray | None:
    """The outline to show for a case: ground truth, else a validated AI mask, else the primary model's."""
    from recommender.services import case_mask

    found = case_mask(case)
    return None if found is None else found[0]


def case_area(case: Case, mask: np.ndarray | None) -> dict:
    """{"area_px", "area_mm2"} of an outline of this case (mm² only when the scan has a pixel spacing)."""
    from segmentation.services import measurements

    if mask is None:
        return {"area_px": None, "area_mm2": None}
    m = measurements(
        np.asarray(mask, dtype=bool), (case.scan.pixel_spacing_mm, case.scan.pixel_spacing_col_mm)
    )
    return {"area_px": m["area_px"], "area_mm2": m["area_mm2"]}


def similar_rows(matches) -> list[dict]:
    """Similar-case matches (recommender.selectors.Match) with what a card shows: the case, its mask
    state, its diagnoses and the type's label, in the matches' order."""
    from cases.models import TumourType

    cases = {
        c.pk: c
        for c in Case.objects.filter(pk__in=[m.case_id for m in matches])
        .select_related("patient", "scan")
        .prefetch_related("segmentation_runs")
    }
    names: dict[int, list[str]] = {}
    for case_id, name in (
        CaseDiagnosis.objects.filter(case_id__in=list(cases))
        .values_list("case_id", "diagnosis__name")
        .order_by("recorded_at")
    ):
        names.setdefault(case_id, []).append(name)
    labels = dict(TumourType.choices)
    return [
        {
            "match": m,
            "case": cases[m.case_id],
            "state": mask_state(cases[m.case_id], cases[m.case_id].segmentation_runs.all()),
            "diagnoses": names.get(m.case_id, []),
            "type_label": labels.get(m.tumour_type),
        }
        for m in matches
        if m.case_id in cases
    ]

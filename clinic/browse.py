"""Reads behind the clinician's pages: case, patient and diagnosis searches, a case's mask state, its best
outline and its area. The pages' own selectors: they compose the record, the runs and the recommender."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import Count, F, Max, Q, QuerySet

from cases.models import Case, CaseDiagnosis, Diagnosis, MaskSource, Patient, TumourType
from cases.selectors import case_list, case_mask_versions
from recommender.names import normalise
from recommender.services import case_mask, case_outline_run
from segmentation.models import ReviewStatus, RunStatus, SegmentationRun
from segmentation.selectors import OtherRegion, case_processing_status, run_other_regions
from segmentation.services import measurements, primary_model_version

STATUS_FILTERS = {
    "processing": "Segmenting",
    "done": "Segmented",
    "failed": "A model failed",
    "review": "Awaiting review",
    "validated": "Validated",
    "rejected": "Rejected",
    "imported": "Imported",
}

# The outline sources that are a clinician's decision (a correction, or an earlier version restored).
CLINICIAN_MASK_SOURCES = (MaskSource.CORRECTED, MaskSource.RESTORED)


def case_search(*, q: str = "", tumour_type: str = "", status: str = "") -> QuerySet[Case]:
    """Newest first. ``q`` matches the patient identifier or a recorded diagnosis (accents and case
    ignored)."""
    cases = case_list(tumour_type=tumour_type or None).annotate(
        n_runs=Count("segmentation_runs", distinct=True),
        n_open=Count(
            "segmentation_runs", filter=Q(segmentation_runs__status__in=["queued", "running"]), distinct=True
        ),
        n_failed=Count("segmentation_runs", filter=Q(segmentation_runs__status="failed"), distinct=True),
        n_validated=Count(
            "segmentation_runs", filter=Q(segmentation_runs__review_status="validated"), distinct=True
        ),
        n_done=Count("segmentation_runs", filter=Q(segmentation_runs__status="done"), distinct=True),
        n_rejected=Count(
            "segmentation_runs", filter=Q(segmentation_runs__review_status="rejected"), distinct=True
        ),
    )
    q = q.strip()
    if q:
        diagnosed = CaseDiagnosis.objects.filter(
            Q(diagnosis__name__icontains=q) | Q(diagnosis__key__contains=normalise(q) or q)
        ).values("case_id")
        cases = cases.filter(Q(patient__identifier__icontains=q) | Q(pk__in=diagnosed))
    corrected = Q(mask_source__in=CLINICIAN_MASK_SOURCES)
    if status == "processing":
        cases = cases.filter(n_open__gt=0)
    elif status == "done":
        cases = cases.filter(n_runs__gt=0, n_open=0)
    elif status == "failed":
        cases = cases.filter(n_failed__gt=0)
    elif status == "review":
        cases = (
            cases.filter(n_runs__gt=0, n_open=0, n_validated=0)
            .exclude(corrected)
            .exclude(_outline_rejected())
        )
    elif status == "validated":
        cases = cases.filter(corrected | Q(n_validated__gt=0))
    elif status == "rejected":
        cases = cases.filter(_outline_rejected())
    elif status == "imported":
        cases = cases.filter(n_runs=0, mask_source=MaskSource.IMPORTED)
    return cases.prefetch_related("segmentation_runs__model_version", "case_diagnoses__diagnosis").order_by(
        "-created_at", "-id"
    )


def _outline_rejected() -> Q:
    """``mask_state``'s "rejected" over ``case_search``'s counts: no ground truth, no validated AI mask,
    nothing running, and a clinician rejected the primary model's mask (or every finished AI mask)."""
    primary = primary_model_version()
    primary_rejected = SegmentationRun.objects.filter(
        model_version=primary, review_status=ReviewStatus.REJECTED
    ).values("case_id")
    return (
        Q(n_validated=0, n_open=0)
        & ~Q(pk__in=Case.objects.case_base().values("pk"))
        & (Q(pk__in=primary_rejected) | Q(n_rejected__gt=0, n_rejected=F("n_done")))
    )


@dataclass(frozen=True)
class MaskState:
    """What a clinician needs to know about the outline shown for a case."""

    code: str  # imported | corrected | validated | rejected | pending | processing | none
    label: str


def mask_state(case: Case, runs, *, primary_id: int | None = None) -> MaskState:
    """The state of the outline ``case_mask`` picks. ``primary_id`` (the primary model's id) saves a
    query per case in lists; without it it is looked up."""
    runs = list(runs)
    if case.mask_source == MaskSource.CORRECTED:
        return MaskState("corrected", "Corrected by a clinician · validated")
    if case.mask_source == MaskSource.RESTORED:
        return MaskState("corrected", "Earlier outline restored by a clinician · validated")
    if case.mask_source == MaskSource.IMPORTED and case.ground_truth_mask:
        return MaskState("imported", "Imported ground truth")
    if any(r.review_status == ReviewStatus.VALIDATED for r in runs):
        return MaskState("validated", "AI mask validated")
    if any(r.status in (RunStatus.QUEUED, RunStatus.RUNNING) for r in runs):
        return MaskState("processing", "Segmenting…")
    done = [r for r in runs if r.status == RunStatus.DONE]
    rejected = [r for r in done if r.review_status == ReviewStatus.REJECTED]
    if rejected:
        if primary_id is None:
            primary = primary_model_version()
            primary_id = primary.pk if primary else None
        # With no validated mask, a rejected primary mask leaves the case without an outline.
        if len(rejected) == len(done) or any(r.model_version_id == primary_id for r in rejected):
            return MaskState("rejected", "AI mask rejected · needs a clinician's outline")
    if done:
        return MaskState("pending", "AI mask awaiting review")
    return MaskState("none", "No mask")


def case_status(runs) -> str:
    """The segmentation status for a page: "none" when nothing was run (e.g. an imported case)."""
    runs = list(runs)
    return case_processing_status(runs) if runs else "none"


def case_best_mask(case: Case) -> np.ndarray | None:
    """The outline to show for a case: ground truth, else a validated AI mask, else the primary model's
    unless a clinician rejected it (then None: the case needs a clinician's outline)."""
    found = case_mask(case)
    return None if found is None else found[0]


def case_area(case: Case, mask: np.ndarray | None) -> dict:
    """{"area_px", "area_mm2"} of an outline of this case (mm² only when the scan has a pixel spacing)."""
    if mask is None:
        return {"area_px": None, "area_mm2": None}
    m = measurements(
        np.asarray(mask, dtype=bool), (case.scan.pixel_spacing_mm, case.scan.pixel_spacing_col_mm)
    )
    return {"area_px": m["area_px"], "area_mm2": m["area_mm2"]}


def mask_history(case: Case) -> list[dict]:
    """The case's mask versions, oldest first, each with its area (mm² when the scan has a pixel spacing)
    and whether it is the outline in use and, so, the one that feeds the similar-case base."""
    rows = []
    for version in case_mask_versions(case=case):
        in_use = version.pk == case.mask_version_id
        rows.append(
            {
                "version": version,
                "area_px": version.area_px,
                "area_mm2": area_mm2_of(case, version.area_px),
                "in_use": in_use,
                "feeds_case_base": in_use and case.in_case_base,
            }
        )
    return rows


def area_mm2_of(case: Case, area_px: int | None) -> float | None:
    """An area in pixels of this case's slice in mm² (rounded to 0.1), or None without a pixel spacing."""
    row_mm, col_mm = case.scan.pixel_spacing_mm, case.scan.pixel_spacing_col_mm
    if not row_mm or area_px is None:
        return None
    return round(area_px * row_mm * (col_mm or row_mm), 1)


def similar_rows(matches) -> list[dict]:
    """Similar-case matches (recommender.selectors.Match) with what a card shows: the case, its mask
    state, its diagnoses and the type's label, in the matches' order."""
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


def case_diagnoses(case: Case) -> QuerySet[CaseDiagnosis]:
    """The diagnoses recorded on a case, oldest first, with who recorded them."""
    return case.case_diagnoses.select_related("diagnosis", "recorded_by").order_by("recorded_at")


def case_has_outline_to_start_from(case: Case) -> bool:
    """Whether the correction page can start from an outline (``case_best_mask``'s): a ground truth or
    an AI mask that was not rejected."""
    if case.ground_truth_mask:
        return True
    primary = primary_model_version()
    run = case_outline_run(case.segmentation_runs.exclude(mask_file=""), primary.pk if primary else None)
    return run is not None


def case_other_regions(case: Case) -> list[OtherRegion]:
    """The regions the primary model's latest finished run saw but left out of its mask (highest peak
    first), whatever the review said of that mask: a rejected outline is when another region matters most."""
    primary = primary_model_version()
    if primary is None:
        return []
    run = (
        case.segmentation_runs.filter(model_version=primary, status=RunStatus.DONE)
        .exclude(probability_file="")
        .select_related("model_version")
        .order_by("-pk")
        .first()
    )
    return [] if run is None else run_other_regions(run)


def case_pictures_changed(case_id: int) -> tuple | None:
    """When what a case's pictures show last changed (the case row, a run finishing, a review); None when
    there is no such case."""
    return (
        Case.objects.filter(pk=case_id)
        .annotate(
            last_run=Max("segmentation_runs__finished_at"),
            last_review=Max("segmentation_runs__reviewed_at"),
        )
        .values_list("updated_at", "last_run", "last_review")
        .first()
    )


def patient_search(*, q: str = "") -> QuerySet[Patient]:
    """Patients whose identifier contains ``q``, with their number of cases; latest case first."""
    patients = Patient.objects.annotate(n_cases=Count("cases"), last_case=Max("cases__created_at"))
    if q:
        patients = patients.filter(identifier__icontains=q)
    return patients.order_by("-last_case", "identifier")


def patient_timeline(patient: Patient) -> list[dict]:
    """The patient's cases, oldest first, each with its mask state, status, best outline's area and
    diagnoses."""
    timeline = []
    for case in (
        patient.cases.select_related("scan", "study")
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
    return timeline


def diagnosis_search(*, q: str = "", in_use_only: bool = False) -> QuerySet[Diagnosis]:
    """Catalogue entries whose key holds every word of ``q`` (accents and case ignored), by name; with
    ``in_use_only``, without the retired and merged ones."""
    entries = Diagnosis.objects.annotate(n_cases=Count("case_diagnoses")).select_related(
        "created_by", "first_case", "merged_into"
    )
    if in_use_only:
        entries = entries.filter(retired_at__isnull=True)
    for token in normalise(q).split():
        entries = entries.filter(key__contains=token)
    return entries.order_by("name")


def diagnosis_cases(diagnosis: Diagnosis) -> QuerySet[Case]:
    """The cases a diagnosis was recorded on, newest first."""
    return (
        Case.objects.filter(case_diagnoses__diagnosis=diagnosis)
        .select_related("patient", "scan")
        .prefetch_related("segmentation_runs")
        .order_by("-created_at", "-id")
    )

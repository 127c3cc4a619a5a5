"""Reads for the segmentation app."""

from __future__ import annotations

from django.db.models import QuerySet

from cases.models import Case
from segmentation.models import RunStatus, SegmentationRun


def case_runs(*, case: Case) -> QuerySet[SegmentationRun]:
    return SegmentationRun.objects.filter(case=case).select_related("model_version")


def case_processing_status(runs: list[SegmentationRun]) -> str:
    """ "queued" until a run starts, "running" while any is unfinished, "done" once every run has finished."""
    if not runs:
        return "queued"
    if all(r.status in (RunStatus.DONE, RunStatus.FAILED) for r in runs):
        return "done"
    if all(r.status == RunStatus.QUEUED for r in runs):
        return "queued"
    return "running"


def run_get(*, run_id: int) -> SegmentationRun | None:
    return SegmentationRun.objects.select_related("case", "model_version").filter(pk=run_id).first()

"""Reads for the segmentation app."""

from __future__ import annotations

import numpy as np
from django.db.models import QuerySet
from PIL import Image

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


def load_probability(run: SegmentationRun) -> np.ndarray | None:
    """The run's stored probability map as float32 in [0, 1], or None before it is done."""
    if not run.probability_file:
        return None
    with run.probability_file.open("rb") as fh:
        return np.asarray(Image.open(fh).convert("L"), dtype=np.float32) / 255.0


def load_mask(run: SegmentationRun) -> np.ndarray | None:
    """The run's stored mask as bool, or None before it is done."""
    if not run.mask_file:
        return None
    with run.mask_file.open("rb") as fh:
        return np.asarray(Image.open(fh).convert("L")) > 127

"""Reads for the segmentation app."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db.models import QuerySet
from PIL import Image

from cases.dicom_out import MaskOrigin
from cases.models import Case
from ml.postprocess import likeliest_region, other_regions, postprocess_options
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


def run_mask_origin(run: SegmentationRun) -> MaskOrigin:
    """What a run's DICOM Segmentation says made its mask: the model version and the exact weights."""
    model = run.model_version
    weights = run.weights or model.weights_key
    return MaskOrigin(
        key=f"run{run.pk}",
        description=f"Tumour mask by the {model.name} model"[:64],
        model_name=model.name,
        model_version=weights if len(weights) <= 64 else model.weights_key,
        model_parameters=(("weights", weights), ("threshold", f"{model.threshold:g}")),
        instance_number=run.pk,
    )


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


@dataclass(frozen=True)
class OtherRegion:
    """A region of a run's probability map that its model would outline but its clean-up left out."""

    rank: int  # 1: the highest peak
    mask: np.ndarray = field(repr=False)
    peak: float  # the highest probability in it
    area_px: int
    # The model outlined nothing and no region reached its threshold and size floor: this is the region
    # around the map's highest point, down to half of it (``ml.postprocess.likeliest_region``), lower
    # confidence still than a region left out.
    likeliest: bool = False


def run_other_regions(run: SegmentationRun, *, limit: int = 3) -> list[OtherRegion]:
    """The regions of the run's stored probability map above its model's threshold (and size floor) that
    its mask leaves out, highest peak first (``ml.postprocess.other_regions``); when the mask is empty and
    there is none, the map's likeliest region, marked so; none before the run is done."""
    prob, mask = load_probability(run), load_mask(run)
    if prob is None or mask is None:
        return []
    version = run.model_version
    floor = postprocess_options(version.metadata.get("postprocess"))["min_component_px"]
    found = other_regions(prob, mask, version.threshold, min_component_px=floor, limit=limit)
    if not found and not mask.any() and (likeliest := likeliest_region(prob)) is not None:
        region, peak, area = likeliest
        return [OtherRegion(rank=1, mask=region, peak=peak, area_px=area, likeliest=True)]
    return [
        OtherRegion(rank=n, mask=region, peak=peak, area_px=area)
        for n, (region, peak, area) in enumerate(found, 1)
    ]

"""Records the page tests need, made without TensorFlow."""

from __future__ import annotations

import numpy as np
from django.core.files.base import ContentFile

from cases.rendering import mask_png_bytes
from segmentation.models import ModelVersion, RunStatus, SegmentationRun
from segmentation.services import measurements


def add_finished_run(case, name: str, mask: np.ndarray, *, ensemble: bool = False):
    """A done run. Plain models are inactive and the ensemble has no members, so no Keras model ever loads."""
    version, _ = ModelVersion.objects.get_or_create(
        name=name,
        defaults={
            "architecture": "ensemble" if ensemble else "unet",
            "is_active": ensemble,
            "is_ensemble": ensemble,
        },
    )
    run = SegmentationRun(
        case=case,
        model_version=version,
        status=RunStatus.DONE,
        runtime_ms=12.0,
        **measurements(mask, (case.scan.pixel_spacing_mm, case.scan.pixel_spacing_col_mm)),
    )
    run.mask_file.save(f"case{case.pk}_{name}_mask.png", ContentFile(mask_png_bytes(mask)), save=False)
    run.save()
    return run

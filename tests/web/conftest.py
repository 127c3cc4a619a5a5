"""Fixtures for the server-side page tests: a case with finished AI runs, made without TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile

from cases.rendering import mask_png_bytes
from segmentation.testing import *  # noqa: F401,F403  (shared fixtures: media_dir, models_dir, ...)
from segmentation.testing import make_case, synthetic_slice


def add_finished_run(case, name: str, mask: np.ndarray, *, ensemble: bool = False):
    """A done run. Plain models are inactive and the ensemble has no members, so no Keras model ever loads."""
    from segmentation.models import ModelVersion, RunStatus, SegmentationRun
    from segmentation.services import measurements

    version, _ = ModelVersion.objects.get_or_create(
        name=name, defaults={"architecture": "ensemble" if ensemble else "unet", "is_active": ensemble,
                             "is_ensemble": ensemble})
    run = SegmentationRun(case=case, model_version=version, status=RunStatus.DONE, runtime_ms=12.0,
                          **measurements(mask, (case.scan.pixel_spacing_mm, case.scan.pixel_spacing_col_mm)))
    run.mask_file.save(f"case{case.pk}_{name}_mask.png", ContentFile(mask_png_bytes(mask)), save=False)
    run.save()
    return run


@pytest.fixture
def segmented_case(db, media_dir, owner):
    """A clinician's upload (patient WEB-1, no ground truth) with two finished AI masks."""
    case = make_case(user=owner, patient="WEB-1", seed=3)
    _, lesion = synthetic_slice(96, center=(48, 48), radius=10, seed=3)
    add_finished_run(case, "unet_a", lesion)
    add_finished_run(case, "ensemble", lesion, ensemble=True)
    return case

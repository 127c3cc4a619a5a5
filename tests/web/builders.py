"""Records the page tests need, made without TensorFlow."""

from __future__ import annotations

import base64
import io

import numpy as np
from django.core.files.base import ContentFile
from PIL import Image

from cases.models import Case
from cases.rendering import mask_png_bytes, png_bytes
from segmentation.models import ModelVersion, RunStatus, SegmentationRun
from segmentation.services import measurements


def add_finished_run(case, name: str, mask: np.ndarray, *, ensemble: bool = False, probability=None):
    """A done run. Plain models are inactive and the ensemble has no members, so no Keras model ever loads.
    ``probability`` (floats in [0, 1]) is stored as its map, as a worker stores one."""
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
    if probability is not None:
        stored = np.clip(np.round(np.asarray(probability) * 255.0), 0, 255).astype(np.uint8)
        run.probability_file.save(
            f"case{case.pk}_{name}_prob.png", ContentFile(png_bytes(stored)), save=False
        )
    run.save()
    return run


def current_revision(case) -> int:
    """The case's revision as a page rendered now would carry it in its forms' hidden ``revision`` input."""
    return Case.objects.values_list("revision", flat=True).get(pk=case.pk)


def mask_data_url(mask: np.ndarray) -> str:
    """A painted outline as the correction page posts it: a PNG data URL, paint opaque red."""
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = (255, 48, 48, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

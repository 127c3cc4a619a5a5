"""Honest results: whether a case gets a type suggestion and similar cases at all, and outlier outlines.

Before the recommender describes a case it judges, in this order:

1. **Not a brain MRI slice like the training ones**: the slice's whole-image statistics lie beyond the
   99th percentile of the training slices' Mahalanobis distances (``ml.slice_check``; the reference is
   ``models/slice_reference.json``, or ``TUMORSITE_SLICE_REFERENCE``, "" for none; without one this check
   is skipped, with a warning when the file is missing).
2. **No tumour found by the models**: the AI outline is empty or (unless a clinician validated it)
   smaller than half of the smallest tumour an expert outlined in the training split (as a share of the
   slice: ``min_tumour_share`` in the reference, measured by ``python -m ml.slice_check``).

Either one: no description, no type suggestion, no similar cases. Cases outlined by an expert (the case
base) are not judged: their outline is the ground truth.

A described AI outline is then compared with the case base's expert and validated outlines: its size
relative to the head, elongation, solidity and number of parts, and the ensemble's agreement, beyond
the base's 1st-99th percentiles is flagged (``mask_outlier_flags``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.slice_check import SliceReference
from recommender.features import FEATURE_NAMES
from recommender.models import AnalysisStatus, CaseFeatures, MaskKind

logger = logging.getLogger(__name__)

# Half the smallest training tumour (0.00116 of its slice: 304 px of 512 x 512), from
# `python -m ml.slice_check --data ../shared/data/figshare`; used when no reference file is installed.
MIN_TUMOUR_SHARE = 0.00058
OUTLIER_PERCENTILES = (1.0, 99.0)
MIN_BASE_FOR_OUTLIERS = 20  # fewer base outlines than this: no percentiles worth the name
OUTLIER_FEATURES = {  # feature -> how a clinician reads it
    "log_area_frac": "size relative to the head",
    "eccentricity": "elongation",
    "solidity": "solidity (how convex it is)",
    "n_components": "number of separate parts",
}

_references: dict[tuple[str, float], tuple[SliceReference | None, float]] = {}
_warned: set[str] = set()


def slice_reference_path() -> Path | None:
    """TUMORSITE_SLICE_REFERENCE when set ("" turns the check off), else ``slice_reference.json`` beside
    the models."""
    explicit = getattr(settings, "TUMORSITE_SLICE_REFERENCE", None)
    if explicit is not None:
        return Path(explicit) if explicit else None
    return Path(settings.TUMORSITE_MODELS_DIR) / "slice_reference.json"


def _reference_file() -> tuple[SliceReference | None, float]:
    """The installed slice reference and its min_tumour_share (read once per file version)."""
    path = slice_reference_path()
    if path is None:
        return None, MIN_TUMOUR_SHARE
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        if str(path) not in _warned:
            _warned.add(str(path))
            logger.warning("no slice reference at %s: slices are not checked for being brain MRI", path)
        return None, MIN_TUMOUR_SHARE
    if key not in _references:
        try:
            data = json.loads(path.read_text())
            _references[key] = (SliceReference.from_json(data), float(data["min_tumour_share"]))
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("unreadable slice reference %s (%s): slices are not checked", path, exc)
            _references[key] = (None, MIN_TUMOUR_SHARE)
    return _references[key]


def judge_slice(image: np.ndarray, mask: np.ndarray | None, kind: str) -> tuple[str, dict]:
    """(AnalysisStatus, the figures behind it) for a case's slice and the outline ``case_mask`` picked."""
    if kind == MaskKind.GROUND_TRUTH:
        return AnalysisStatus.TUMOUR, {}
    reference, min_share = _reference_file()
    detail: dict = {}
    if reference is not None:
        distance = reference.distance(image)
        detail["slice_distance"] = round(distance, 2)
        detail["slice_flag_above"] = round(reference.flag_above, 2)
        if distance > reference.flag_above:
            return AnalysisStatus.NOT_BRAIN_MRI, detail
    share = 0.0 if mask is None or mask.size == 0 else float(np.count_nonzero(mask)) / mask.size
    detail["mask_share"] = round(share, 6)
    detail["min_tumour_share"] = min_share
    # A clinician who validated a small outline has seen a tumour there: only an empty one means none.
    if share == 0.0 or (share < min_share and kind != MaskKind.VALIDATED):
        return AnalysisStatus.NO_TUMOUR, detail
    return AnalysisStatus.TUMOUR, detail


def _base_features() -> np.ndarray:
    rows = CaseFeatures.objects.filter(in_base=True).values_list("features", flat=True)
    return np.stack([np.asarray(r, np.float64) for r in rows]) if rows else np.zeros((0, len(FEATURE_NAMES)))


def mask_outlier_flags(
    features: np.ndarray, *, agreement: float | None = None, base_agreements=()
) -> tuple[list[dict], dict]:
    """Warnings for an AI outline whose shape or the models' agreement is unusual for the case base.

    Each is ``{"code", "message"}``; with fewer than MIN_BASE_FOR_OUTLIERS base outlines (or agreements)
    nothing is judged. Returns (flags, the percentiles used)."""
    base = _base_features()
    flags: list[dict] = []
    used: dict = {"base_outlines": len(base)}
    lo_p, hi_p = OUTLIER_PERCENTILES
    if len(base) >= MIN_BASE_FOR_OUTLIERS:
        for name, label in OUTLIER_FEATURES.items():
            i = FEATURE_NAMES.index(name)
            lo, hi = np.percentile(base[:, i], [lo_p, hi_p])
            value = float(features[i])
            used[name] = {"value": round(value, 4), "p1": round(float(lo), 4), "p99": round(float(hi), 4)}
            side = "larger" if value > hi else "smaller" if value < lo else None
            if side:
                share = hi_p if side == "larger" else 100 - lo_p
                flags.append(
                    {
                        "code": f"outlier_{name}",
                        "message": f"Unusual outline: its {label} is {side} than in {share:g} % of the "
                        "case base's expert and validated outlines. Check it with care before relying on it.",
                    }
                )
    agreements = [a for a in base_agreements if a is not None]
    used["base_agreements"] = len(agreements)
    if agreement is not None and len(agreements) >= MIN_BASE_FOR_OUTLIERS:
        lo = float(np.percentile(agreements, lo_p))
        used["agreement"] = {"value": round(agreement, 4), "p1": round(lo, 4)}
        if agreement < lo:
            flags.append(
                {
                    "code": "outlier_agreement",
                    "message": f"Unusual disagreement between the models (agreement {agreement:.2f}, lower "
                    f"than in {100 - lo_p:g} % of the case base's cases). Check the outline with care.",
                }
            )
    return flags, used

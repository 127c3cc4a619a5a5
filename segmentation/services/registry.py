"""The model registry: which segmenters this site serves, the ensemble over them, and the primary one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.inference import ensemble_calibration, file_sha256
from segmentation.models import ENSEMBLE_NAME, ModelVersion
from segmentation.services.errors import SegmentationError

logger = logging.getLogger(__name__)


def models_dir() -> Path:
    return Path(settings.TUMORSITE_MODELS_DIR)


def model_versions_sync(*, directory: Path | None = None) -> list[ModelVersion]:
    """Register every ``<name>.keras`` + ``<name>.json`` bundle in the models directory, and the ensemble.

    Bundles that disappeared are deactivated, not deleted (their runs keep pointing at them). The
    ensemble averages one model per architecture: the one with the best validation Dice.
    """
    directory = Path(directory or models_dir())
    seen: list[ModelVersion] = []
    for keras_path in sorted(directory.glob("*.keras")) if directory.is_dir() else []:
        json_path = keras_path.with_suffix(".json")
        if not json_path.is_file():
            logger.warning("skipping %s: no %s beside it", keras_path.name, json_path.name)
            continue
        meta = json.loads(json_path.read_text())
        name = meta.get("name") or keras_path.stem
        if name == ENSEMBLE_NAME:
            raise SegmentationError(
                f'"{ENSEMBLE_NAME}" is reserved for the ensemble; rename {keras_path.name}'
            )
        spec = meta.get("spec") or {}
        sha = file_sha256(keras_path)
        if ModelVersion.objects.filter(name=name).exclude(file_sha256__in=["", sha]).exists():
            logger.info("new weights for %s (a new weights key)", name)
        version, _ = ModelVersion.objects.update_or_create(
            name=name,
            defaults={
                "architecture": meta.get("architecture") or spec.get("architecture") or "",
                "encoder": meta.get("encoder") or spec.get("encoder") or "",
                # Relative to TUMORSITE_MODELS_DIR when inside it (the record survives moving the volume).
                "file_path": str(keras_path.resolve().relative_to(models_dir().resolve()))
                if keras_path.resolve().is_relative_to(models_dir().resolve())
                else str(keras_path.resolve()),
                "metadata": meta,
                "file_sha256": sha,
                "threshold": float(meta.get("threshold", 0.5)),
                "input_size": int(meta.get("input_size") or spec.get("input_size") or 128),
                "is_active": True,
                "is_ensemble": False,
            },
        )
        seen.append(version)
    ModelVersion.objects.filter(is_ensemble=False).exclude(pk__in=[v.pk for v in seen]).update(
        is_active=False
    )

    members = best_per_architecture(seen)
    if members:
        calibration = _ensemble_calibration(directory, members)
        ensemble, _ = ModelVersion.objects.update_or_create(
            name=ENSEMBLE_NAME,
            defaults={
                "architecture": ENSEMBLE_NAME,
                "encoder": "",
                "file_path": "",
                # As ml.inference.Ensemble: mean threshold, keep-largest when most members use it.
                "metadata": {
                    "members": [m.name for m in members],
                    "description": "mean of the members' probability maps",
                    "postprocess": calibration.get("postprocess")
                    or {
                        "keep_largest": 2
                        * sum(bool(m.metadata.get("postprocess", {}).get("keep_largest")) for m in members)
                        > len(members),
                        "min_component_px": 0,
                    },
                    "tta": calibration.get("tta"),
                    "calibrated": bool(calibration),
                    # ml.agreement's validated flag for these members, when stored
                    "agreement": calibration.get("agreement"),
                },
                "threshold": float(calibration.get("threshold", np.mean([m.threshold for m in members]))),
                "input_size": max(m.input_size for m in members),
                "is_active": True,
                "is_ensemble": True,
            },
        )
        seen.append(ensemble)
    else:
        ModelVersion.objects.filter(is_ensemble=True).update(is_active=False)
    return seen


def _ensemble_calibration(directory: Path, members: list[ModelVersion]) -> dict:
    """ml.calibrate's choices for exactly these members (``ml.inference.ensemble_calibration``), or {}."""
    try:
        return ensemble_calibration(directory, [m.name for m in members]) or {}
    except ValueError:
        logger.warning("ignoring %s: not valid JSON", Path(directory) / "ensemble.json")
        return {}


def val_dice(version: ModelVersion) -> float:
    try:
        return float(version.metadata["metrics"]["val"]["dice_mean"])
    except (KeyError, TypeError, ValueError):
        return -1.0


def best_per_architecture(versions: list[ModelVersion]) -> list[ModelVersion]:
    best: dict[str, ModelVersion] = {}
    for v in versions:
        if v.architecture not in best or val_dice(v) > val_dice(best[v.architecture]):
            best[v.architecture] = v
    return [best[a] for a in sorted(best)]


def primary_model_version() -> ModelVersion | None:
    """The model whose mask is the case's primary mask: TUMORSITE_PRIMARY_MODEL, else the best active one."""
    wanted = getattr(settings, "TUMORSITE_PRIMARY_MODEL", ENSEMBLE_NAME)
    version = ModelVersion.objects.filter(name=wanted, is_active=True).first()
    if version is None:
        active = list(ModelVersion.objects.filter(is_active=True))
        version = max(active, key=lambda v: (v.is_ensemble, val_dice(v)), default=None)
    return version


def weights_used(version: ModelVersion) -> str:
    """What a run records as its weights: the version's ``weights_key``, or for the ensemble
    ``ensemble(<member key>, ...)`` over its current members."""
    if not version.is_ensemble:
        return version.weights_key
    keys = sorted(m.weights_key for m in ModelVersion.objects.filter(name__in=version.members))
    return f"{version.name}({', '.join(keys)})"[:255]

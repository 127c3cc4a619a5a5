"""The model registry: which segmenters this site serves, the ensemble over them, and the primary one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from audit.services import audit_record
from ml.inference import ensemble_calibration, file_sha256
from segmentation.models import ENSEMBLE_NAME, ModelVersion
from segmentation.services.errors import SegmentationError

logger = logging.getLogger(__name__)


def models_dir() -> Path:
    return Path(settings.TUMORSITE_MODELS_DIR)


def model_versions_sync(*, directory: Path | None = None) -> list[ModelVersion]:
    """Register every ``<name>.keras`` + ``<name>.json`` bundle in the models directory, and the ensemble.

    Bundles that disappeared are deactivated, not deleted (their runs keep pointing at them). The
    ensemble averages one model per architecture: the one with the best validation Dice. Each version
    added, given new weights, activated or deactivated gets one ``model.changed`` entry in the audit
    trail (its old and new weights hash, or the ensemble's members), written with the change.
    """
    directory = Path(directory or models_dir())
    bundles = _bundles(directory)  # the files are read and hashed before the transaction, not inside it
    with transaction.atomic():
        seen = [
            _version_save(name=name, defaults=defaults, directory=directory) for name, defaults in bundles
        ]
        gone = ModelVersion.objects.filter(is_ensemble=False, is_active=True).exclude(
            pk__in=[v.pk for v in seen]
        )
        _versions_deactivate(gone, directory=directory)

        members = best_per_architecture(seen)
        if members:
            fields = _ensemble_fields(directory, members)
            seen.append(_version_save(name=ENSEMBLE_NAME, defaults=fields, directory=directory))
        else:
            ensembles = ModelVersion.objects.filter(is_ensemble=True, is_active=True)
            _versions_deactivate(ensembles, directory=directory)
    return seen


def _ensemble_fields(directory: Path, members: list[ModelVersion]) -> dict:
    """The ensemble's ModelVersion fields over these members, with ml.calibrate's choices when stored."""
    calibration = _ensemble_calibration(directory, members)
    return {
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
    }


def _bundles(directory: Path) -> list[tuple[str, dict]]:
    """``(name, the ModelVersion's fields)`` of each bundle in ``directory``, hashed; no database access."""
    bundles = []
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
        defaults = {
            "architecture": meta.get("architecture") or spec.get("architecture") or "",
            "encoder": meta.get("encoder") or spec.get("encoder") or "",
            # Relative to TUMORSITE_MODELS_DIR when inside it (the record survives moving the volume).
            "file_path": str(keras_path.resolve().relative_to(models_dir().resolve()))
            if keras_path.resolve().is_relative_to(models_dir().resolve())
            else str(keras_path.resolve()),
            "metadata": meta,
            "file_sha256": file_sha256(keras_path),
            "threshold": float(meta.get("threshold", 0.5)),
            "input_size": int(meta.get("input_size") or spec.get("input_size") or 128),
            "is_active": True,
            "is_ensemble": False,
        }
        bundles.append((name, defaults))
    return bundles


def _audited_state(version: ModelVersion) -> dict:
    """What a ``model.changed`` entry compares: the weights (the ensemble's are its members), the
    threshold and whether the version is served."""
    weights = {"members": version.members} if version.is_ensemble else {"file_sha256": version.file_sha256}
    return {**weights, "threshold": version.threshold, "is_active": version.is_active}


def _model_changed_record(*, version: ModelVersion, before: dict, change: str, directory: Path) -> None:
    after = _audited_state(version)
    changes = {
        field: [before.get(field), value] for field, value in after.items() if before.get(field) != value
    }
    if changes:
        audit_record(
            event="model.changed",
            obj=version,
            changes=changes,
            detail={"change": change, "weights": weights_used(version), "directory": str(directory)},
        )


def _version_save(*, name: str, defaults: dict, directory: Path) -> ModelVersion:
    previous = ModelVersion.objects.filter(name=name).first()
    before = _audited_state(previous) if previous is not None else {}
    version, _ = ModelVersion.objects.update_or_create(name=name, defaults=defaults)
    after = _audited_state(version)
    if previous is None:
        change = "added"
    elif any(before.get(field) != after[field] for field in ("file_sha256", "members") if field in after):
        if before.get("file_sha256"):
            logger.info("new weights for %s (a new weights key)", name)
        change = "replaced"
    elif not before["is_active"]:
        change = "activated"
    else:
        change = "updated"
    _model_changed_record(version=version, before=before, change=change, directory=directory)
    return version


def _versions_deactivate(versions, *, directory: Path) -> None:
    for version in list(versions):
        before = _audited_state(version)
        version.is_active = False
        version.save(update_fields=["is_active"])
        _model_changed_record(version=version, before=before, change="deactivated", directory=directory)


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

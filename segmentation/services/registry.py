"""The model registry: which segmenters this site serves, the ensemble over them, the primary one, and the
type classifier."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from ml.inference import ensemble_calibration, file_sha256
from segmentation.models import ENSEMBLE_NAME, TYPE_CLASSIFIER_SLOT, Kind, ModelVersion, Stage
from segmentation.services.errors import SegmentationError

logger = logging.getLogger(__name__)


def models_dir() -> Path:
    return Path(settings.TUMORSITE_MODELS_DIR)


# === Is a version's file the one recorded? ===

_hash_lock = threading.Lock()
_hashes: dict[Path, tuple[int, int, str]] = {}  # path -> (size, mtime in ns, sha256)


def weights_sha256(path: Path) -> str:
    """The file's SHA-256, computed again only when its size or modification time changed."""
    stat = path.stat()
    with _hash_lock:
        cached = _hashes.get(path)
    if cached and cached[:2] == (stat.st_size, stat.st_mtime_ns):
        return cached[2]
    digest = file_sha256(path)
    with _hash_lock:
        _hashes[path] = (stat.st_size, stat.st_mtime_ns, digest)
    return digest


def weights_problem(version: ModelVersion) -> str | None:
    """Why the version's weights file is not the one its row records, or None. A worker on another host,
    or a file copied over by hand, must not serve other weights under a version's name."""
    if not version.file_path:
        return "no weights file recorded"
    if not version.file_sha256:
        return "no SHA-256 recorded: run manage.py sync_models"
    try:
        digest = weights_sha256(models_dir() / version.file_path)
    except FileNotFoundError:
        return "the weights file is missing"
    except OSError as exc:
        return f"the weights file cannot be read ({type(exc).__name__})"
    if digest != version.file_sha256:
        return "the weights file's SHA-256 differs from the recorded one"
    return None


def model_versions_sync(*, directory: Path | None = None) -> list[ModelVersion]:
    """Register every ``<name>.keras`` + ``<name>.json`` bundle at the top of the models directory, the
    ensemble over the active segmenters, and the type classifier ``TUMORSITE_TYPE_CLASSIFIER`` names (slot
    ``type_classifier``, by the same rules).

    A bundle's name is its slot. Weights already recorded keep their stage: a retired version whose file
    is still there is not served again, and a version promoted from ``candidates/`` stays served (see
    ``segmentation.services.lifecycle``). New weights become the slot's active version when the slot
    serves nothing or served them from this very file (copied over by hand: the old weights are gone, so
    the old row is retired), and a candidate otherwise. A row is never repointed at other weights.
    Active versions whose file vanished are switched off, not deleted (their runs keep pointing at
    them). The ensemble averages one active model per architecture: the best by validation Dice. Each
    change gets one ``model.changed`` entry in the audit trail, written with it.
    """
    directory = Path(directory or models_dir())
    bundles = _bundles(directory)  # the files are read and hashed before the transaction, not inside it
    classifier = type_classifier_bundle()
    if classifier is not None and classifier[1]["file_path"] not in {f["file_path"] for _, f in bundles}:
        bundles.append(classifier)
    with transaction.atomic():
        seen = [
            _version_save(name=name, defaults=defaults, directory=directory) for name, defaults in bundles
        ]
        gone = [
            v
            for v in ModelVersion.objects.filter(is_ensemble=False, is_active=True).exclude(
                pk__in=[v.pk for v in seen]
            )
            if not version_file(v).is_file() or version_file(v).parent == directory.resolve()
        ]
        _versions_deactivate(gone, directory=directory)
        ensemble = ensemble_refresh(directory=directory)
        if ensemble is not None:
            seen.append(ensemble)
    return seen


def ensemble_refresh(*, directory: Path | None = None) -> ModelVersion | None:
    """Point the ensemble at the best active version per architecture (by name), or switch it off when
    none is served. Audited when that changes something; call it inside the writer's transaction."""
    directory = Path(directory or models_dir())
    members = best_per_architecture(
        list(ModelVersion.objects.segmenters().filter(is_ensemble=False, is_active=True))
    )
    if members:
        fields = _ensemble_fields(directory, members)
        return _version_save(name=ENSEMBLE_NAME, defaults=fields, directory=directory)
    _versions_deactivate(ModelVersion.objects.filter(is_ensemble=True, is_active=True), directory=directory)
    return None


def type_classifier_bundle() -> tuple[str, dict] | None:
    """``bundle_fields`` of the type classifier ``TUMORSITE_TYPE_CLASSIFIER`` names, or None when the setting
    is empty (no classifier) or its bundle is missing or not a classifier's (logged)."""
    setting = getattr(settings, "TUMORSITE_TYPE_CLASSIFIER", "")
    if not setting:
        return None
    path = Path(setting)
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        logger.warning("no type classifier bundle at %s (+ .json): none recorded", path)
        return None
    name, fields = bundle_fields(path)
    if fields["kind"] != Kind.TYPE_CLASSIFIER:
        logger.warning("%s is not a type classifier bundle (its JSON task): not recorded", path)
        return None
    return name, fields


def type_classifier_version() -> ModelVersion | None:
    """The active type classifier. Before ``sync_models`` ever recorded one, the bundle that
    ``TUMORSITE_TYPE_CLASSIFIER`` names is recorded first, as ``sync_models`` would (audited)."""
    served = ModelVersion.objects.filter(kind=Kind.TYPE_CLASSIFIER, stage=Stage.ACTIVE, is_active=True)
    version = served.first()
    if version is not None or ModelVersion.objects.filter(kind=Kind.TYPE_CLASSIFIER).exists():
        return version
    bundle = type_classifier_bundle()
    if bundle is None:
        return None
    try:
        with transaction.atomic():
            _version_save(name=bundle[0], defaults=bundle[1], directory=models_dir())
    except IntegrityError:  # another process recorded it meanwhile
        pass
    return served.first()


def version_file(version: ModelVersion) -> Path:
    """The version's ``.keras`` file (``file_path`` is relative to the models directory when inside it)."""
    return (models_dir() / version.file_path).resolve()


def retired_name(version: ModelVersion) -> str:
    """A non-active version's name: the slot's name is kept for the slot's active version."""
    return f"{version.slot}@{version.file_sha256[:12]}"


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
        "slot": ENSEMBLE_NAME,
        "stage": Stage.ACTIVE,
    }


def _bundles(directory: Path) -> list[tuple[str, dict]]:
    """``(name, the ModelVersion's fields)`` of each bundle in ``directory``, hashed; no database access."""
    bundles = []
    for keras_path in sorted(directory.glob("*.keras")) if directory.is_dir() else []:
        json_path = keras_path.with_suffix(".json")
        if not json_path.is_file():
            logger.warning("skipping %s: no %s beside it", keras_path.name, json_path.name)
            continue
        bundles.append(bundle_fields(keras_path))
    return bundles


def bundle_fields(keras_path: Path) -> tuple[str, dict]:
    """``(name, the ModelVersion's fields)`` of the bundle ``keras_path`` + its ``.json``, hashed."""
    meta = json.loads(keras_path.with_suffix(".json").read_text())
    classifier = meta.get("task") == "tumour_type_classification"
    # One classifier serves the type suggestion, whatever its bundle is called.
    name = TYPE_CLASSIFIER_SLOT if classifier else meta.get("name") or keras_path.stem
    if name == ENSEMBLE_NAME:
        raise SegmentationError(f'"{ENSEMBLE_NAME}" is reserved for the ensemble; rename {keras_path.name}')
    spec = meta.get("spec") or {}
    if classifier and spec.get("tumour_input"):
        raise SegmentationError(
            f"{keras_path.name} reads the tumour's outline (--tumour-region), which the type suggestion does "
            "not give a classifier yet: it is a cross-validation study's bundle, not one to serve."
        )
    defaults = {
        "kind": Kind.TYPE_CLASSIFIER if classifier else Kind.SEGMENTER,
        "architecture": TYPE_CLASSIFIER_SLOT
        if classifier
        else meta.get("architecture") or spec.get("architecture") or "",
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
        "slot": name,
    }
    return name, defaults


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
    """Record a bundle (or the ensemble) of slot ``name``; see ``model_versions_sync`` for the rules."""
    if defaults["is_ensemble"]:
        recorded = ModelVersion.objects.filter(name=name).first()
    else:
        recorded = ModelVersion.objects.filter(slot=name, file_sha256=defaults["file_sha256"]).first()
    if recorded is not None and recorded.stage != Stage.ACTIVE:
        return recorded  # a candidate's or a retired version's file: its stage is the lifecycle's
    if recorded is not None:
        before = _audited_state(recorded)
        for field, value in defaults.items():
            setattr(recorded, field, value)
        recorded.save()
        change = "updated" if before["is_active"] else "activated"
        _model_changed_record(version=recorded, before=before, change=change, directory=directory)
        return recorded

    served = ModelVersion.objects.filter(slot=name, stage=Stage.ACTIVE).first()
    if served is not None and version_file(served) != (models_dir() / defaults["file_path"]).resolve():
        # The slot is served from another file (a promoted candidate): new weights here wait their turn.
        version = ModelVersion.objects.create(
            name=f"{name}@{defaults['file_sha256'][:12]}",
            **{**defaults, "stage": Stage.CANDIDATE, "is_active": False},
        )
        logger.info("new weights for %s registered as candidate %s", name, version.name)
        _model_changed_record(version=version, before={}, change="candidate", directory=directory)
        return version
    before = {}
    if served is not None:
        # The served file was overwritten: its weights are gone, so its row retires and the new ones serve.
        logger.info("new weights for %s (a new weights key)", name)
        before = _audited_state(served)
        served.stage, served.is_active, served.retired_at = Stage.RETIRED, False, timezone.now()
        served.name = retired_name(served)
        served.save(update_fields=["stage", "is_active", "retired_at", "name"])
    version = ModelVersion.objects.create(name=name, **{**defaults, "stage": Stage.ACTIVE})
    change = "replaced" if served is not None else "added"
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
    version = ModelVersion.objects.segmenters().filter(name=wanted, is_active=True).first()
    if version is None:
        active = list(ModelVersion.objects.segmenters().filter(is_active=True))
        version = max(active, key=lambda v: (v.is_ensemble, val_dice(v)), default=None)
    return version


def weights_used(version: ModelVersion) -> str:
    """What a run records as its weights: the version's ``weights_key``, or for the ensemble
    ``ensemble(<member key>, ...)`` over its current members."""
    if not version.is_ensemble:
        return version.weights_key
    keys = sorted(m.weights_key for m in ModelVersion.objects.filter(name__in=version.members))
    return f"{version.name}({', '.join(keys)})"[:255]

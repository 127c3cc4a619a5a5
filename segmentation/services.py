"""Writes for the segmentation app: registering model versions, creating and executing runs.

Execution is split so that a Celery task stays a thin entry point:
- ``segmentation_run_claim`` takes a queued run with a conditional UPDATE (a second delivery of the
  same message finds nothing to claim and does nothing);
- ``segmentation_run_execute`` loads the scan, runs ``ml`` inference, stores the mask, the compact
  probability map and the measurements;
- ``segmentation_run_release`` puts a run back in the queue after a transient error (the task retries);
- ``segmentation_run_fail`` records a message a person can read.
"""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from PIL import Image

from cases.models import Case
from ml.inference import file_sha256
from segmentation.models import ENSEMBLE_NAME, ModelVersion, RunStatus, SegmentationRun

logger = logging.getLogger(__name__)

# A run "running" for longer than this was orphaned by a worker that died; a redelivery may take it.
STALE_RUN_AFTER = timedelta(minutes=15)


class TransientError(Exception):
    """Worth retrying: the storage or the database was briefly unavailable."""


class SegmentationError(Exception):
    """Permanent: retrying will not help. ``str(error)`` is shown to the clinician."""


# === Model versions ===


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
    from ml.inference import ensemble_calibration

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


# === Runs ===


def segmentation_runs_create_for_case(*, case: Case) -> list[SegmentationRun]:
    """One queued run per active model version (the ensemble included), enqueued once committed.

    Idempotent: a model that already has a run for this case keeps it.
    """
    versions = list(ModelVersion.objects.filter(is_active=True))
    if not versions:
        versions = model_versions_sync()
        versions = [v for v in versions if v.is_active]
    runs = []
    with transaction.atomic():
        for version in versions:
            run, created = SegmentationRun.objects.get_or_create(case=case, model_version=version)
            runs.append(run)
            if created:
                _enqueue_on_commit(run.pk)
    return runs


def segmentation_run_requeue(*, run: SegmentationRun) -> SegmentationRun:
    """Run a failed run again (e.g. after a model was fixed)."""
    SegmentationRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).update(
        status=RunStatus.QUEUED, error="", attempts=0
    )
    run.refresh_from_db()
    if run.status == RunStatus.QUEUED:
        _enqueue_on_commit(run.pk)
    return run


def _enqueue_on_commit(run_id: int) -> None:
    from segmentation.tasks import run_segmentation_task
    from tumorsite.queue import enqueue

    transaction.on_commit(lambda: enqueue(run_segmentation_task, run_id))


def segmentation_run_claim(*, run_id: int) -> SegmentationRun | None:
    """Take a queued run (or one orphaned by a dead worker) for this worker; None if someone else has it."""
    now = timezone.now()
    claimable = Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, started_at__lt=now - STALE_RUN_AFTER)
    claimed = SegmentationRun.objects.filter(claimable, pk=run_id).update(
        status=RunStatus.RUNNING, started_at=now, attempts=F("attempts") + 1, error=""
    )
    if claimed != 1:
        return None
    return SegmentationRun.objects.select_related("case__scan", "model_version").get(pk=run_id)


def segmentation_run_release(*, run_id: int, message: str) -> None:
    """Back to the queue after a transient error, so the retry can claim it again."""
    SegmentationRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=RunStatus.QUEUED, error=f"retrying: {message}"[:2000]
    )


def segmentation_run_fail(*, run_id: int, message: str) -> None:
    SegmentationRun.objects.filter(pk=run_id).exclude(status=RunStatus.DONE).update(
        status=RunStatus.FAILED, error=message[:2000], finished_at=timezone.now()
    )
    _after_run_finished(run_id)


def segmentation_run_execute(*, run_id: int) -> SegmentationRun | None:
    """Claim and run one segmentation; None when there was nothing to do (gone, taken, or finished).

    Raises TransientError (the caller retries; the run is back in the queue) or marks the run failed
    with a readable message on a permanent error.
    """
    run = segmentation_run_claim(run_id=run_id)
    if run is None:
        return None
    started = time.perf_counter()
    try:
        image = scan_pixels(run.case)
        prob, agreement = _probability(run, image)
        mask = _binarize(run.model_version, prob)
        _store_result(run, mask, prob, (time.perf_counter() - started) * 1000.0, **agreement)
    except FileNotFoundError as exc:
        segmentation_run_fail(run_id=run_id, message=f"A file is missing: {exc}")
        return SegmentationRun.objects.get(pk=run_id)
    except TransientError as exc:
        segmentation_run_release(run_id=run_id, message=str(exc))
        raise
    except (OSError, ConnectionError, TimeoutError) as exc:
        segmentation_run_release(run_id=run_id, message=str(exc))
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        logger.exception("segmentation run %s failed", run_id)
        segmentation_run_fail(run_id=run_id, message=_readable(exc))
        return SegmentationRun.objects.get(pk=run_id)
    _after_run_finished(run_id)
    return SegmentationRun.objects.get(pk=run_id)


def _readable(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (SegmentationError,)) or type(exc).__name__ == "ImageReadError":
        return text
    return f"The segmentation failed ({type(exc).__name__}): {text}"


def scan_pixels(case: Case) -> np.ndarray:
    """The case's slice as a 2-D array, read back from media storage with the upload's reader."""
    from cases.selectors import scan_read

    return scan_read(scan=case.scan).pixels


def _segmenter(version: ModelVersion):
    from ml.inference import load_segmenter

    path = models_dir() / version.file_path
    if not path.is_file():
        raise SegmentationError(
            f"The model file for {version.name} is missing ({version.file_path}); run `manage.py sync_models`."
        )
    return load_segmenter(path)


def _probability(run: SegmentationRun, image: np.ndarray) -> tuple[np.ndarray, dict]:
    """The run's probability map, and for the ensemble its members' agreement (``member_agreement``)."""
    if not run.model_version.is_ensemble:
        return predict_probability(run.model_version, image), {}
    from ml.inference import ensemble_proba

    # Members that already ran on this case are not run again: their stored maps are averaged.
    stored = {}
    for member_run in SegmentationRun.objects.filter(
        case=run.case, model_version__name__in=run.model_version.members, status=RunStatus.DONE
    ).select_related("model_version"):
        stored[member_run.model_version.name] = load_probability(member_run)
    members = member_probabilities(run.model_version, image, stored=stored)
    return ensemble_proba([prob for _, prob in members]), member_agreement(run.model_version, members)


def predict_probability(
    version: ModelVersion, image: np.ndarray, *, stored: dict | None = None
) -> np.ndarray:
    """One model's (or the ensemble's) probability map at the image's size, without touching the record."""
    if not version.is_ensemble:
        return _segmenter(version).predict_proba([image])[0]
    from ml.inference import ensemble_proba

    return ensemble_proba([prob for _, prob in member_probabilities(version, image, stored=stored)])


def member_probabilities(
    version: ModelVersion, image: np.ndarray, *, stored: dict | None = None
) -> list[tuple[ModelVersion, np.ndarray]]:
    """Each member of the ensemble ``version`` with its probability map of ``image``: the ``stored`` map
    (by member name) when the member ran already with its own TTA, else a fresh prediction."""
    members = list(ModelVersion.objects.filter(name__in=version.members))
    if not members:
        raise SegmentationError("The ensemble has no member models; run `manage.py sync_models`.")
    tta = version.metadata.get("tta")  # None: each member's own choice, as its stored run made it
    out = []
    for member in members:
        prob = (stored or {}).get(member.name) if tta is None else None
        if prob is None or prob.shape != image.shape:
            prob = _segmenter(member).predict_proba([image], tta=tta)[0]
        out.append((member, prob))
    return out


def member_agreement(version: ModelVersion, members: list[tuple[ModelVersion, np.ndarray]]) -> dict:
    """``agreement``: mean pairwise Dice of the members' masks, each made with the member's own threshold
    and clean-up (``ml.agreement.mask_agreement``); ``agreement_flagged``: whether it is below the
    ensemble's ``agreement.flag_below`` (chosen on the validation split by ``python -m ml.agreement
    --write``), or None when no such choice is stored."""
    from ml.agreement import mask_agreement

    value = mask_agreement([_binarize(member, prob) for member, prob in members])
    flag_below = (version.metadata.get("agreement") or {}).get("flag_below")
    flagged = None if value is None or flag_below is None else bool(value < flag_below)
    return {"agreement": None if value is None else round(value, 4), "agreement_flagged": flagged}


def segment_image(version: ModelVersion, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probability map, bool mask) of one slice, as a run would store them; nothing is stored."""
    prob = predict_probability(version, image)
    return prob, _binarize(version, prob)


def _binarize(version: ModelVersion, prob: np.ndarray) -> np.ndarray:
    from ml.postprocess import binarize, postprocess_options

    return binarize(prob, version.threshold, **postprocess_options(version.metadata.get("postprocess")))


def load_probability(run: SegmentationRun) -> np.ndarray | None:
    if not run.probability_file:
        return None
    with run.probability_file.open("rb") as fh:
        return np.asarray(Image.open(fh).convert("L"), dtype=np.float32) / 255.0


def load_mask(run: SegmentationRun) -> np.ndarray | None:
    if not run.mask_file:
        return None
    with run.mask_file.open("rb") as fh:
        return np.asarray(Image.open(fh).convert("L")) > 127


def _png(array: np.ndarray) -> ContentFile:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return ContentFile(buf.getvalue())


def measurements(mask: np.ndarray, spacing_mm: tuple[float | None, float | None]) -> dict:
    """Area (px, and mm² when the pixel spacing is known), bbox [x0, y0, x1, y1) and centroid [x, y]."""
    area = int(mask.sum())
    result: dict = {"area_px": area, "area_mm2": None, "bbox": None, "centroid": None}
    row_mm, col_mm = spacing_mm
    if row_mm and (col_mm or row_mm):
        result["area_mm2"] = round(area * row_mm * (col_mm or row_mm), 3)
    if area:
        ys, xs = np.nonzero(mask)
        result["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        result["centroid"] = [round(float(xs.mean()), 2), round(float(ys.mean()), 2)]
    return result


def weights_used(version: ModelVersion) -> str:
    """What a run records as its weights: the version's ``weights_key``, or for the ensemble
    ``ensemble(<member key>, ...)`` over its current members."""
    if not version.is_ensemble:
        return version.weights_key
    keys = sorted(m.weights_key for m in ModelVersion.objects.filter(name__in=version.members))
    return f"{version.name}({', '.join(keys)})"[:255]


def _store_result(
    run: SegmentationRun,
    mask: np.ndarray,
    prob: np.ndarray,
    runtime_ms: float,
    *,
    agreement: float | None = None,
    agreement_flagged: bool | None = None,
) -> None:
    scan = run.case.scan
    m = measurements(mask, (scan.pixel_spacing_mm, scan.pixel_spacing_col_mm))
    stem = f"case{run.case_id}_{run.model_version.name}"
    # Files first, then one conditional UPDATE: a run that was meanwhile failed or finished elsewhere
    # is not overwritten.
    run.mask_file.save(f"{stem}_mask.png", _png(mask.astype(np.uint8) * 255), save=False)
    run.probability_file.save(
        f"{stem}_prob.png", _png(np.clip(np.round(prob * 255.0), 0, 255).astype(np.uint8)), save=False
    )
    SegmentationRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.DONE,
        error="",
        mask_file=run.mask_file.name,
        probability_file=run.probability_file.name,
        runtime_ms=round(runtime_ms, 2),
        finished_at=timezone.now(),
        weights=weights_used(run.model_version),
        agreement=agreement,
        agreement_flagged=agreement_flagged,
        **m,
    )


def _after_run_finished(run_id: int) -> None:
    """When the case's primary run is done: describe the case and suggest its tumour type."""
    run = SegmentationRun.objects.select_related("model_version", "case").filter(pk=run_id).first()
    if run is None or run.status != RunStatus.DONE:
        return
    primary = primary_model_version()
    if primary is None or run.model_version_id != primary.pk:
        return
    from recommender.services import case_analyse

    try:
        case_analyse(case=run.case)
    except Exception:
        logger.exception("describing case %s after its primary segmentation failed", run.case_id)


# === Review ===


def segmentation_run_review(*, run: SegmentationRun, user, validated: bool) -> SegmentationRun:
    """A clinician validates (the mask joins the case base) or rejects an AI mask."""
    from segmentation.models import ReviewStatus

    if run.status != RunStatus.DONE:
        raise SegmentationError("Only a finished segmentation can be reviewed.")
    run.review_status = ReviewStatus.VALIDATED if validated else ReviewStatus.REJECTED
    run.reviewed_by = user
    run.reviewed_at = timezone.now()
    run.save(update_fields=["review_status", "reviewed_by", "reviewed_at"])
    from recommender.services import case_analyse

    case_analyse(case=run.case)
    return run

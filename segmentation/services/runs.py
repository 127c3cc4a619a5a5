"""The run state machine: creating runs, claiming, executing, releasing and failing them, and the review.

Execution is split so that a Celery task stays a thin entry point:
- ``segmentation_run_claim`` takes a queued run with a conditional UPDATE (a second delivery of the
  same message finds nothing to claim and does nothing);
- ``segmentation_run_execute`` loads the scan, runs ``ml`` inference, stores the mask, the compact
  probability map and the measurements;
- ``segmentation_run_release`` puts a run back in the queue after a transient error (the task retries);
- ``segmentation_run_fail`` records a message a person can read.

A run that ends sends ``signals.run_finished``; a review sends ``signals.run_reviewed``.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import numpy as np
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from cases.models import Case
from cases.selectors import case_pixels
from ml.inference import ensemble_proba
from segmentation import tasks
from segmentation.models import ModelVersion, ReviewStatus, RunStatus, SegmentationRun
from segmentation.selectors import load_probability
from segmentation.services.errors import SegmentationError, TransientError
from segmentation.services.files import run_files_save
from segmentation.services.inference import (
    mask_from_probability,
    member_agreement,
    member_probabilities,
    predict_probability,
)
from segmentation.services.registry import model_versions_sync, weights_used
from segmentation.signals import run_finished, run_reviewed
from tumorsite.queue import enqueue

logger = logging.getLogger(__name__)

# A run "running" for longer than this was orphaned by a worker that died; a redelivery may take it.
STALE_RUN_AFTER = timedelta(minutes=15)


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
    transaction.on_commit(lambda: enqueue(tasks.run_segmentation_task, run_id))


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
    _announce_finished(run_id)


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
        image = case_pixels(case=run.case)
        prob, agreement = _probability(run, image)
        mask = mask_from_probability(run.model_version, prob)
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
    _announce_finished(run_id)
    return SegmentationRun.objects.get(pk=run_id)


def _readable(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (SegmentationError,)) or type(exc).__name__ == "ImageReadError":
        return text
    return f"The segmentation failed ({type(exc).__name__}): {text}"


def _probability(run: SegmentationRun, image: np.ndarray) -> tuple[np.ndarray, dict]:
    """The run's probability map, and for the ensemble its members' agreement (``member_agreement``)."""
    if not run.model_version.is_ensemble:
        return predict_probability(run.model_version, image), {}
    # Members that already ran on this case are not run again: their stored maps are averaged.
    stored = {}
    for member_run in SegmentationRun.objects.filter(
        case=run.case, model_version__name__in=run.model_version.members, status=RunStatus.DONE
    ).select_related("model_version"):
        stored[member_run.model_version.name] = load_probability(member_run)
    members = member_probabilities(run.model_version, image, stored=stored)
    return ensemble_proba([prob for _, prob in members]), member_agreement(run.model_version, members)


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
    # Files first, then one conditional UPDATE: a run that was meanwhile failed or finished elsewhere
    # is not overwritten.
    run_files_save(run, mask, prob)
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


def _announce_finished(run_id: int) -> None:
    run = SegmentationRun.objects.select_related("model_version", "case").filter(pk=run_id).first()
    if run is not None:
        transaction.on_commit(lambda: run_finished.send(sender=SegmentationRun, run=run))


REVIEW_REASON_MAX_LENGTH = 1000


@transaction.atomic
def segmentation_run_review(
    *, run: SegmentationRun, user, validated: bool, reason: str = ""
) -> SegmentationRun:
    """A reviewer validates (the mask joins the case base) or rejects an AI mask, with an optional reason
    (kept with the review; a new review replaces it). Audited: ``run.validated`` / ``run.rejected``.

    Raises ``ValueError`` for a reason longer than ``REVIEW_REASON_MAX_LENGTH`` and ``SegmentationError``
    for a run that is not finished; neither writes anything."""
    reason = reason.strip()
    if len(reason) > REVIEW_REASON_MAX_LENGTH:
        raise ValueError(
            f"The reason is limited to {REVIEW_REASON_MAX_LENGTH} characters ({len(reason)} given): "
            "shorten it and review again."
        )
    if run.status != RunStatus.DONE:
        raise SegmentationError("Only a finished segmentation can be reviewed.")
    old = run.review_status
    run.review_status = ReviewStatus.VALIDATED if validated else ReviewStatus.REJECTED
    run.review_reason = reason
    run.reviewed_by = user
    run.reviewed_at = timezone.now()
    run.save(update_fields=["review_status", "review_reason", "reviewed_by", "reviewed_at"])
    audit_record(
        event="run.validated" if validated else "run.rejected",
        obj=run,
        user=user,
        changes={"review_status": [old, run.review_status]},
        detail={"case": run.case_id, "model": run.model_version.name, "reason": reason},
    )
    transaction.on_commit(lambda: run_reviewed.send(sender=SegmentationRun, run=run))
    return run

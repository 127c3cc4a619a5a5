"""The run state machine: creating runs, claiming, executing, releasing and failing them, and the review.

Execution is split so that a Celery task stays a thin entry point:
- ``segmentation_run_claim`` takes a queued run with a conditional UPDATE (a second delivery of the
  same message finds nothing to claim and does nothing);
- ``segmentation_run_execute`` loads the scan, runs ``ml`` inference, stores the mask, the compact
  probability map and the measurements;
- ``segmentation_run_release`` puts a run back in the queue after a transient error (the task retries);
- ``segmentation_run_fail`` records a message a person can read;
- ``segmentation_runs_sweep`` finds the runs whose message was lost (queued past a deadline) or whose
  worker died (running past a deadline), gives up on those that killed a worker too often, and names
  the rest to be sent again.

The database, not the broker, holds the work: a run that is created or put back in the queue sends
``signals.runs_queued`` once committed, and ``segmentation.tasks`` sends the messages; a lost message
only delays a run until the sweep (docs/operations.md, "When the broker or a worker dies").

A run that ends sends ``signals.run_finished``; a review sends ``signals.run_reviewed``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from cases.models import Case
from cases.selectors import case_pixels
from cases.storage import atomic_with_files
from ml.inference import ensemble_proba
from segmentation.models import Kind, ModelVersion, ReviewStatus, RunStatus, SegmentationRun
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
from segmentation.signals import run_finished, run_reviewed, runs_queued

logger = logging.getLogger(__name__)


def stale_run_after() -> timedelta:
    """A run "running" for longer than this was orphaned by a worker that died: the sweep sends it again
    and a delivery may claim it. Longer than the task's hard time limit, so a live worker never loses its
    claim (``TUMORSITE_RUN_CLAIM_DEADLINE_S``)."""
    return timedelta(seconds=settings.TUMORSITE_RUN_CLAIM_DEADLINE_S)


def lost_run_after() -> timedelta:
    """A run still "queued" this long after it was created (or last claimed, for one put back after a
    transient error) lost its message, or waits behind a backlog (``TUMORSITE_RUN_QUEUED_DEADLINE_S``)."""
    return timedelta(seconds=settings.TUMORSITE_RUN_QUEUED_DEADLINE_S)


def segmentation_runs_create_for_case(*, case: Case) -> list[SegmentationRun]:
    """One queued run per active model version (the ensemble included), enqueued once committed.

    Idempotent: a model that already has a run for this case keeps it.
    """
    versions = list(ModelVersion.objects.segmenters().filter(is_active=True))
    if not versions:
        versions = model_versions_sync()
        versions = [v for v in versions if v.is_active and v.kind == Kind.SEGMENTER]
    runs = []
    created_ids = []
    with transaction.atomic():
        for version in versions:
            run, created = SegmentationRun.objects.get_or_create(case=case, model_version=version)
            runs.append(run)
            if created:
                created_ids.append(run.pk)
        _announce_queued(created_ids)
    return runs


def segmentation_run_requeue(*, run: SegmentationRun) -> SegmentationRun:
    """Run a failed run again (e.g. after a model was fixed)."""
    SegmentationRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).update(
        status=RunStatus.QUEUED, error="", attempts=0
    )
    run.refresh_from_db()
    if run.status == RunStatus.QUEUED:
        _announce_queued([run.pk])
    return run


def _announce_queued(run_ids: list[int]) -> None:
    if run_ids:
        transaction.on_commit(lambda: runs_queued.send(sender=SegmentationRun, run_ids=list(run_ids)))


def segmentation_run_claim(*, run_id: int) -> SegmentationRun | None:
    """Take a queued run (or one orphaned by a dead worker) for this worker; None if someone else has it
    or it is finished. One conditional UPDATE, so of two deliveries of the same run only one claims it.

    A run whose worker died ``TUMORSITE_RUN_MAX_ATTEMPTS`` times is failed instead of claimed again
    (a slice that kills the worker must not take every worker down in turn)."""
    now = timezone.now()
    orphaned = Q(status=RunStatus.RUNNING, started_at__lt=now - stale_run_after())
    claimable = Q(status=RunStatus.QUEUED) | orphaned
    claimed = (
        SegmentationRun.objects.filter(claimable, pk=run_id)
        .filter(Q(status=RunStatus.QUEUED) | Q(attempts__lt=settings.TUMORSITE_RUN_MAX_ATTEMPTS))
        .update(status=RunStatus.RUNNING, started_at=now, attempts=F("attempts") + 1, error="")
    )
    if claimed != 1:
        _give_up_on_orphans(SegmentationRun.objects.filter(orphaned, pk=run_id))
        return None
    return SegmentationRun.objects.select_related("case__scan", "model_version").get(pk=run_id)


@dataclass
class Sweep:
    """What ``segmentation_runs_sweep`` found: the runs to send again, and the ones it failed."""

    resend: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def segmentation_runs_sweep(*, now: datetime | None = None, lost_after: timedelta | None = None) -> Sweep:
    """The runs to send to the queue again: queued past ``lost_run_after`` (their message was lost, e.g.
    the broker was down when they were created) and running past ``stale_run_after`` (their worker
    died). An orphan that has used up its ``TUMORSITE_RUN_MAX_ATTEMPTS`` is failed here, with a message
    that says why. Sending again is harmless: the claim takes a run once. ``lost_after`` overrides
    ``lost_run_after`` (``timedelta(0)``: every queued run, e.g. after the embedded mode restarted)."""
    now = now or timezone.now()
    orphaned = SegmentationRun.objects.filter(
        status=RunStatus.RUNNING, started_at__lt=now - stale_run_after()
    )
    sweep = Sweep(failed=_give_up_on_orphans(orphaned))
    cutoff = now - (lost_run_after() if lost_after is None else lost_after)
    lost = Q(status=RunStatus.QUEUED, created_at__lt=cutoff) & (
        Q(started_at__isnull=True) | Q(started_at__lt=cutoff)
    )
    stale = Q(status=RunStatus.RUNNING, started_at__lt=now - stale_run_after())
    sweep.resend = list(
        SegmentationRun.objects.filter(lost | stale).order_by("pk").values_list("pk", flat=True)
    )
    if sweep.resend or sweep.failed:
        logger.warning(
            "segmentation runs sweep: sending %s again (%s), failed %s (%s)",
            len(sweep.resend),
            sweep.resend[:20],
            len(sweep.failed),
            sweep.failed[:20],
        )
    return sweep


def _give_up_on_orphans(orphans) -> list[int]:
    """Fail the orphaned runs (of ``orphans``) whose worker died on every one of their attempts."""
    limit = settings.TUMORSITE_RUN_MAX_ATTEMPTS
    ids = list(orphans.filter(attempts__gte=limit).values_list("pk", flat=True))
    message = (
        f"Gave up after {limit} attempts: the worker stopped (it crashed, ran out of memory or was "
        "killed) each time it segmented this slice. Check the worker's log, then run it again."
    )
    failed = []
    for run_id in ids:
        # Conditional again: a worker may have finished it since the SELECT.
        if orphans.filter(pk=run_id, attempts__gte=limit).update(
            status=RunStatus.FAILED, error=message, finished_at=timezone.now()
        ):
            failed.append(run_id)
            _announce_finished(run_id)
    return failed


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
    """Claim and run one segmentation, and the case's other queued runs with it; None when there was
    nothing to do (gone, taken, or finished).

    The runs of one case share their slice and, for the single models, one graph call
    (``inference.probabilities_together``), so the first delivery takes them all
    (``_claim_with_siblings``, under a lock on the case's runs) and stores each in turn, the ensemble's
    last (it averages its members' stored maps); their own messages then find them taken. No map is made
    twice, whichever worker gets which message.

    Raises TransientError (the caller retries; the run is back in the queue, and the case's runs it took
    and had not finished are too, each with a new message) or marks a run failed with a readable message
    on a permanent error, and goes on with the others.
    """
    taken = _claim_with_siblings(run_id)
    if not taken:
        return None
    # The delivered run first, the ensemble's last.
    runs = sorted(taken, key=lambda r: (r.model_version.is_ensemble, r.pk != run_id, r.pk))
    image = None
    for i, current in enumerate(runs):
        started = time.perf_counter()
        try:
            if image is None:
                image = case_pixels(case=current.case)
            prob, agreement = _probability(current, image)
            mask = mask_from_probability(current.model_version, prob)
            _store_result(current, mask, prob, (time.perf_counter() - started) * 1000.0, **agreement)
        except FileNotFoundError as exc:  # the slice itself: none of the case's runs can be made
            for unmade in runs[i:]:
                segmentation_run_fail(run_id=unmade.pk, message=f"A file is missing: {exc}")
            break
        except (TransientError, OSError, ConnectionError, TimeoutError) as exc:
            _release_taken(runs[i:], run_id, message=str(exc))
            if isinstance(exc, TransientError):
                raise
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            logger.exception("segmentation run %s failed", current.pk)
            segmentation_run_fail(run_id=current.pk, message=_readable(exc))
            continue
        _announce_finished(current.pk)
    return SegmentationRun.objects.get(pk=run_id)


def _claim_with_siblings(run_id: int) -> list[SegmentationRun]:
    """The delivered run (``segmentation_run_claim``) and its case's other queued runs, all claimed in one
    transaction that first locks the case's runs: when two workers are handed runs of one case at once,
    the second waits for the first to commit and then finds its run taken (PostgreSQL; SQLite has one
    writer). Empty when the delivered run is not this worker's to take."""
    with transaction.atomic():
        case_id = SegmentationRun.objects.filter(pk=run_id).values_list("case_id", flat=True).first()
        if case_id is None:
            return []
        list(SegmentationRun.objects.select_for_update().filter(case_id=case_id).values_list("pk"))
        run = segmentation_run_claim(run_id=run_id)
        if run is None:
            return []
        now = timezone.now()  # the siblings' claim token, as started_at is the delivered run's
        queued = SegmentationRun.objects.filter(case_id=case_id, status=RunStatus.QUEUED)
        queued.update(status=RunStatus.RUNNING, started_at=now, attempts=F("attempts") + 1, error="")
        siblings = SegmentationRun.objects.select_related("case__scan", "model_version").filter(
            case_id=case_id, status=RunStatus.RUNNING, started_at=now
        )
        return [run, *siblings.exclude(pk=run_id)]


def _release_taken(held: list[SegmentationRun], run_id: int, *, message: str) -> None:
    """After a transient error: every run still held goes back to the queue. The delivered run is retried
    by its task; the others' messages were spent on finding them taken, so each gets a new one."""
    for taken in held:
        segmentation_run_release(run_id=taken.pk, message=message)
    _announce_queued([taken.pk for taken in held if taken.pk != run_id])


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
    # is not overwritten, and the files nobody will name are deleted with the rollback (cases.storage).
    # The claim's started_at is its token: a worker that overran TUMORSITE_RUN_CLAIM_DEADLINE_S, whose run
    # another worker took over, stores nothing.
    with atomic_with_files():
        run_files_save(run, mask, prob)
        mine = SegmentationRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, started_at=run.started_at)
        updated = mine.update(
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
        if not updated:
            transaction.set_rollback(True)


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

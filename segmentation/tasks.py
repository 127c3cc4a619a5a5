"""Celery entry points; the work is in segmentation.services.

Workers: ``celery -A tumorsite worker --pool=solo`` (TensorFlow is not fork-safe), one process per GPU
with ``CUDA_VISIBLE_DEVICES`` set. One of them also runs the beat (``-B``) that sweeps the runs every
``TUMORSITE_RUNS_SWEEP_EVERY_S``; every worker sweeps once when it starts.

The database holds the work and the broker only carries reminders: a message that cannot be sent (the
broker is down) is logged and the sweep sends it later; a message delivered twice finds its run claimed
or finished and does nothing (docs/operations.md, "When the broker or a worker dies").
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from celery.signals import worker_ready
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import DatabaseError
from django.dispatch import receiver

from segmentation import services
from segmentation.models import SegmentationRun
from segmentation.signals import runs_queued
from tumorsite import queue

logger = logging.getLogger(__name__)

MAX_RETRIES = 3
RETRY_BACKOFF_S = 5
RETRY_BACKOFF_MAX_S = 300


# The run's result is its row, so no result is stored in the backend (and sending never waits on it).
@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    ignore_result=True,
    soft_time_limit=settings.TUMORSITE_RUN_SOFT_TIME_LIMIT_S,
    time_limit=settings.TUMORSITE_RUN_TIME_LIMIT_S,
)
def run_segmentation_task(self, run_id: int) -> str:
    """Segment one run; a second delivery of the same message finds it claimed or finished and does
    nothing."""
    try:
        run = services.segmentation_run_execute(run_id=run_id)
    except (services.TransientError, DatabaseError) as exc:
        if self.request.retries >= self.max_retries:
            services.segmentation_run_fail(
                run_id=run_id, message=f"Gave up after {self.request.retries + 1} attempts: {exc}"
            )
            return "failed"
        services.segmentation_run_release(run_id=run_id, message=str(exc))
        countdown = get_exponential_backoff_interval(
            factor=RETRY_BACKOFF_S,
            retries=self.request.retries,
            maximum=RETRY_BACKOFF_MAX_S,
            full_jitter=True,
        )
        raise self.retry(exc=exc, countdown=countdown) from exc
    return "skipped" if run is None else run.status


# On the default queue (tumorsite/settings/base.py, CELERY_TASK_ROUTES): it must run while the segmentation
# workers are busy or dead, and it needs no model.
@shared_task(ignore_result=True)
def runs_sweep_task(lost_after_s: float | None = None) -> dict:
    """Send again the runs whose message was lost or whose worker died; fail those that used up their
    attempts. Sends nothing while messages still wait in the queue (those runs are behind them), so an
    idle or dead worker pool does not pile up copies."""
    lost_after = None if lost_after_s is None else timedelta(seconds=lost_after_s)
    try:
        sweep = services.segmentation_runs_sweep(lost_after=lost_after)
    except DatabaseError as exc:  # e.g. a worker started before the database: the next beat sweeps
        logger.warning("runs sweep: the database cannot be read (%s: %s)", type(exc).__name__, exc)
        return {"overdue": None, "sent": 0, "failed": 0, "waiting": None}
    waiting = queue.waiting(settings.TUMORSITE_SEGMENTATION_QUEUE)  # where the runs wait
    sent = 0
    if waiting == 0:
        sent = runs_send(sweep.resend)
    elif sweep.resend:
        logger.info("runs sweep: %s overdue, not sent (queue: %s waiting)", len(sweep.resend), waiting)
    return {"overdue": len(sweep.resend), "sent": sent, "failed": len(sweep.failed), "waiting": waiting}


def runs_send(run_ids: list[int]) -> int:
    """Send one message per run; the number sent. Never raises: a run whose message could not be sent
    stays queued in the database, and the sweep sends it once the broker is back."""
    return queue.enqueue_each(run_segmentation_task, run_ids, what="segmentation run(s)")


@receiver(runs_queued, sender=SegmentationRun)
def _send_queued_runs(sender, run_ids: list[int], **kwargs) -> None:
    runs_send(run_ids)


@worker_ready.connect
def _sweep_when_a_worker_starts(sender=None, **kwargs) -> None:
    # A worker that restarts after a crash picks up the work its predecessor left at once, not at the
    # next beat. Sent, not run here: the worker is not consuming yet.
    try:
        runs_sweep_task.delay()
    except Exception:  # the beat sweeps later
        logger.warning("could not send the start-up sweep; the beat sends one later", exc_info=True)

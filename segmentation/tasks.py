"""Celery entry points; the work is in segmentation.services.

Workers: ``celery -A tumorsite worker --pool=solo`` (TensorFlow is not fork-safe), one process per GPU
with ``CUDA_VISIBLE_DEVICES`` set.
"""

from __future__ import annotations

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import DatabaseError

from segmentation import services

MAX_RETRIES = 3
RETRY_BACKOFF_S = 5
RETRY_BACKOFF_MAX_S = 300


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
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

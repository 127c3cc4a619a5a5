"""Celery entry points of the recommender; the work is in recommender.services.

Describing a case runs the models (the encoder's embedding and the type classifier, both Keras), so a
clinician's decision made in a web request (a review, a correction, a chosen type) only queues this task:
the web process never loads TensorFlow. The Celery worker finds this module through
``app.autodiscover_tasks()``; the embedded queue gets the task object from ``recommender.receivers``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from cases.models import Case
from recommender.models import DescriptionRequest
from recommender.services import case_analyse, description_requests_answered, descriptions_overdue
from tumorsite import queue

logger = logging.getLogger(__name__)


# Bounded like a segmentation run: the first description in a worker loads the same kind of models.
@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=3,
    soft_time_limit=settings.TUMORSITE_RUN_SOFT_TIME_LIMIT_S,
    time_limit=settings.TUMORSITE_RUN_TIME_LIMIT_S,
)
def case_analyse_task(case_id: int) -> str:
    """Describe the case and suggest its type from what its record says when the task runs, so a late or
    repeated delivery gives the same result as a prompt one; a case deleted meanwhile is skipped."""
    started = timezone.now()
    case = Case.objects.select_related("scan").filter(pk=case_id).first()
    if case is None:
        logger.info("case %s is gone; nothing to describe", case_id)
        return "skipped"
    row = case_analyse(case=case)
    description_requests_answered(case_id=case_id, started=started)
    return "described" if row is not None else "no outline"


# On the default queue, like every task but the segmentation runs: it loads no model.
@shared_task(ignore_result=True)
def descriptions_sweep_task(lost_after_s: float | None = None) -> dict:
    """Send again the descriptions asked for and not done within ``TUMORSITE_DESCRIPTION_LOST_AFTER_S``
    (their message was lost with the broker, or their worker died); nothing while messages still wait in
    the default queue (those descriptions may be among them)."""
    lost_after = timedelta(
        seconds=settings.TUMORSITE_DESCRIPTION_LOST_AFTER_S if lost_after_s is None else lost_after_s
    )
    try:
        overdue = descriptions_overdue(lost_after=lost_after)
    except DatabaseError as exc:
        logger.warning("descriptions sweep: the database cannot be read (%s: %s)", type(exc).__name__, exc)
        return {"overdue": None, "sent": 0, "waiting": None}
    waiting = queue.waiting(settings.CELERY_TASK_DEFAULT_QUEUE)
    sent = descriptions_send(overdue) if waiting == 0 else 0
    if overdue and not sent:
        logger.info("descriptions sweep: %s overdue, not sent (queue: %s waiting)", len(overdue), waiting)
    return {"overdue": len(overdue), "sent": sent, "waiting": waiting}


def descriptions_send(case_ids: list[int]) -> int:
    """Queue a description of each case; the number sent. Never raises: an ask whose message could not be
    sent stays in the outbox, and the sweep sends it once the broker is back."""
    sent = queue.enqueue_each(case_analyse_task, case_ids, what="the description of case(s)")
    DescriptionRequest.objects.filter(case_id__in=case_ids[:sent]).update(sent_at=timezone.now())
    return sent

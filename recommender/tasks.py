"""Celery entry points of the recommender; the work is in recommender.services.

Describing a case runs the models (the encoder's embedding and the type classifier, both Keras), so a
clinician's decision made in a web request (a review, a correction, a chosen type) only queues this task:
the web process never loads TensorFlow. The Celery worker finds this module through
``app.autodiscover_tasks()``; the embedded queue gets the task object from ``recommender.receivers``.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from cases.models import Case
from recommender.services import case_analyse

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
    case = Case.objects.select_related("scan").filter(pk=case_id).first()
    if case is None:
        logger.info("case %s is gone; nothing to describe", case_id)
        return "skipped"
    row = case_analyse(case=case)
    return "described" if row is not None else "no outline"

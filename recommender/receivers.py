"""What the recommender does when the apps below it announce something (connected in ``apps.py``).

A run, a review or a clinician's correction is committed before its signal is sent: describing the case
may fail (e.g. no model is installed) without undoing it. The failure is logged, and the next
announcement for the case redoes the description.

Describing a case runs Keras models (the embedding, the type classifier). A run ends in the worker, which
has them loaded, so the description follows at once there (the case page gets its similar cases with
its mask, not one queue round trip later). A review, a correction or a chosen type happens in a web
request: those queue ``case_analyse_task`` instead, so no web process loads TensorFlow. The ask is
recorded first (``DescriptionRequest``), so a message lost with the broker down is sent again by the sweep.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.dispatch import receiver

from cases.models import Case
from cases.signals import case_outline_changed, case_tumour_type_chosen
from recommender.services import case_analyse, case_base_staleness, description_request
from recommender.tasks import descriptions_send
from segmentation.models import RunStatus, SegmentationRun
from segmentation.services import primary_model_version
from segmentation.signals import model_versions_synced, run_finished, run_reviewed

logger = logging.getLogger(__name__)


@receiver(run_finished, dispatch_uid="recommender.describe_after_primary_run")
def describe_after_primary_run(sender, *, run: SegmentationRun, **kwargs) -> None:
    """Once the case's primary run is done: describe the case and suggest its tumour type (in the worker
    that ran it)."""
    if run.status != RunStatus.DONE:
        return
    primary = primary_model_version()
    if primary is None or run.model_version_id != primary.pk:
        return
    _describe(run.case, "after its primary segmentation")


@receiver(run_reviewed, dispatch_uid="recommender.describe_after_review")
def describe_after_review(sender, *, run: SegmentationRun, **kwargs) -> None:
    """A validated AI mask brings a typed case into the base; a rejected one takes it out again."""
    _queue_description(run.case_id, "after a review of its segmentation")


@receiver(case_outline_changed, dispatch_uid="recommender.describe_after_correction")
def describe_after_correction(sender, *, case: Case, **kwargs) -> None:
    _queue_description(case.pk, "after its outline was corrected")


@receiver(case_tumour_type_chosen, dispatch_uid="recommender.describe_after_type_chosen")
def describe_after_type_chosen(sender, *, case: Case, **kwargs) -> None:
    _queue_description(case.pk, "after its tumour type was chosen")


@receiver(model_versions_synced, dispatch_uid="recommender.case_base_staleness")
def warn_if_case_base_stale(sender, **kwargs) -> str | None:
    """The reason the case base's embeddings are stale after new weights, for the person who synced."""
    return case_base_staleness()


def _describe(case: Case, when: str) -> None:
    try:
        case_analyse(case=case)
    except Exception:
        logger.exception("describing case %s %s failed", case.pk, when)


def _queue_description(case_id: int, when: str) -> None:
    # The signals are sent on commit already; on_commit again keeps a sender inside a transaction safe.
    transaction.on_commit(lambda: _send(case_id, when))


def _send(case_id: int, when: str) -> None:
    try:
        description_request(case_id=case_id, reason=when)
    except DatabaseError:  # the decision is committed; only its description may now wait for the next one
        logger.exception("could not record the description asked for case %s %s", case_id, when)
    descriptions_send([case_id])

"""A clinician's decisions on a case, made from the web pages: the corrected mask and the tumour type.

Each is announced with a signal (``cases.signals``) once committed; the apps above listen (e.g. to
describe the case again, so that a corrected or confirmed case joins the similar-case base at once).
What a listener does may fail without undoing the clinician's decision.
"""

from __future__ import annotations

import numpy as np
from django.db import transaction

from cases.models import Case, TumourType, TypeSource
from cases.services import case_ground_truth_set
from cases.signals import case_outline_changed, case_tumour_type_chosen


def case_mask_correct(*, case: Case, mask: np.ndarray, user) -> Case:
    """Store the clinician's corrected outline as the case's ground truth (the AI masks are kept).

    A saved correction counts as validated: ``mask_source`` becomes "corrected", with who and when.
    """
    if not np.asarray(mask).any():
        raise ValueError("The corrected mask is empty: paint the tumour before saving.")
    with transaction.atomic():
        case = case_ground_truth_set(case=case, mask=mask, user=user)
    transaction.on_commit(lambda: case_outline_changed.send(sender=Case, case=case))
    return case


def case_tumour_type_set(*, case: Case, tumour_type: str, user) -> Case:
    """The clinician confirms the suggested type or enters another one; it is never overwritten again."""
    if not tumour_type:
        raise ValueError("Choose a tumour type before saving.")
    if tumour_type not in TumourType.values:
        raise ValueError(
            f"Unknown tumour type {tumour_type!r}; choose one of {', '.join(TumourType.labels)}."
        )
    case.tumour_type = tumour_type
    case.tumour_type_source = TypeSource.CLINICIAN
    case.save(update_fields=["tumour_type", "tumour_type_source", "updated_at"])
    transaction.on_commit(lambda: case_tumour_type_chosen.send(sender=Case, case=case))
    return case

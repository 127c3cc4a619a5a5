"""A clinician's decisions on a case, made from the web pages: the corrected or restored mask and the
tumour type.

Each is announced with a signal (``cases.signals``) once committed; the apps above listen (e.g. to
describe the case again, so that a corrected or confirmed case joins the similar-case base at once).
What a listener does may fail without undoing the clinician's decision.
"""

from __future__ import annotations

import numpy as np
from django.db import transaction

from audit.services import audit_record
from cases.models import Case, MaskSource, MaskVersion, TumourType, TypeSource
from cases.revisions import case_edit
from cases.services import case_ground_truth_set, mask_file_area, mask_version_add, mask_version_backfill
from cases.signals import case_outline_changed, case_tumour_type_chosen
from cases.storage import atomic_with_files


class MaskVersionInUse(ValueError):
    """Restoring the version that is already the case's outline: there is nothing to restore."""


def case_mask_correct(*, case: Case, mask: np.ndarray, user, expected_revision: int | None = None) -> Case:
    """Add the clinician's corrected outline as the case's next mask version, now its ground truth (the
    earlier versions and the AI masks are kept).

    A saved correction counts as validated: ``mask_source`` becomes "corrected", with who and when.
    ``expected_revision``: the case's revision the clinician's page showed (None: not checked); a stale
    one raises ``CaseEditConflict`` and stores nothing.
    """
    if not np.asarray(mask).any():
        raise ValueError("The corrected mask is empty: paint the tumour before saving.")
    # The revision check first: a conflict stores no file and writes no row. The new mask file is
    # deleted again unless the whole edit commits (cases.storage).
    with atomic_with_files(), case_edit(case=case, expected=expected_revision, user=user):
        _lock(case)
        previous = case.mask_version.number if case.mask_version else None
        version = case_ground_truth_set(case=case, mask=mask, user=user)
        _audit_mask_event("mask.corrected", case=case, version=version, previous=previous, user=user)
    transaction.on_commit(lambda: case_outline_changed.send(sender=Case, case=case))
    return case


def case_mask_restore(
    *, case: Case, version: MaskVersion, user, expected_revision: int | None = None
) -> Case:
    """Put an earlier outline back in use by adding it as the case's next version ("restored", with
    ``restored_from``); nothing is removed, so the restore itself can be undone the same way.

    The new version shares the chosen version's stored file rather than copying it: mask files are never
    overwritten or deleted, so one file can safely back both, and the history says where it came from.
    Raises ``MaskVersionInUse`` when ``version`` is already the one in use, ValueError when it belongs to
    another case, ``CaseEditConflict`` when ``expected_revision`` is stale (nothing is written then).
    """
    if version.case_id != case.pk:
        raise ValueError(f"Mask version {version.number} is not one of case {case.pk}'s versions.")
    with case_edit(case=case, expected=expected_revision, user=user):
        _lock(case)
        current = mask_version_backfill(case=case)
        if current is not None and current.pk == version.pk:
            raise MaskVersionInUse(
                f"Version {version.number} is already this case's outline in use: nothing to restore."
            )
        area = version.area_px if version.area_px is not None else mask_file_area(version.file.name)
        added = mask_version_add(
            case=case,
            file_name=version.file.name,
            source=MaskSource.RESTORED,
            user=user,
            area_px=area,
            restored_from=version,
        )
        _audit_mask_event(
            "mask.restored",
            case=case,
            version=added,
            previous=current.number if current else None,
            user=user,
        )
    transaction.on_commit(lambda: case_outline_changed.send(sender=Case, case=case))
    return case


def _lock(case: Case) -> None:
    """Lock the case's row for the rest of the transaction and read its current mask pointer, so two
    saves at once number their versions one after the other."""
    case.refresh_from_db(
        from_queryset=Case.objects.select_for_update(), fields=["mask_version", "ground_truth_mask"]
    )


def _audit_mask_event(event: str, *, case: Case, version: MaskVersion, previous: int | None, user) -> None:
    restored_from = version.restored_from.number if version.restored_from else None
    audit_record(
        event=event,
        obj=case,
        user=user,
        changes={"mask_version": [previous, version.number]},
        detail={"version": version.number, "restored_from": restored_from},
    )


def case_tumour_type_set(*, case: Case, tumour_type: str, user, expected_revision: int | None = None) -> Case:
    """The clinician confirms the suggested type or enters another one; it is never overwritten again.

    ``expected_revision``: the case's revision the clinician saw (``cases.revisions``); a stale one raises
    ``CaseEditConflict`` and records nothing.
    """
    if not tumour_type:
        raise ValueError("Choose a tumour type before saving.")
    if tumour_type not in TumourType.values:
        raise ValueError(
            f"Unknown tumour type {tumour_type!r}; choose one of {', '.join(TumourType.labels)}."
        )
    with case_edit(case=case, expected=expected_revision, user=user):
        before = Case.objects.only("tumour_type", "tumour_type_source").get(pk=case.pk)
        old = before.tumour_type if before.has_recorded_type else None
        case.tumour_type = tumour_type
        case.tumour_type_source = TypeSource.CLINICIAN
        case.save(update_fields=["tumour_type", "tumour_type_source", "updated_at"])
        audit_record(event="type.recorded", obj=case, user=user, changes={"tumour_type": [old, tumour_type]})
    transaction.on_commit(lambda: case_tumour_type_chosen.send(sender=Case, case=case))
    return case

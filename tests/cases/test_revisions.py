"""A case's revision: every clinical edit raises it by one; an edit made on top of a stale one writes nothing.

The race itself (two transactions expecting the same revision at once) needs PostgreSQL's row locks: those
tests run only when DATABASE_URL points at PostgreSQL (the CI's production pass).
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.db import connection, connections, transaction

from audit.models import AuditEntry
from cases.models import Case, CaseDiagnosis, Diagnosis, TypeSource
from cases.review import case_tumour_type_set
from cases.revisions import (
    STALE_FORM_MESSAGE,
    CaseEditConflict,
    case_edit,
    case_revision_claim,
    revision_from_form,
)
from recommender.services import case_diagnosis_remove, diagnosis_record
from segmentation.testing import needs_postgres
from tests.conftest import CaseFactory

pytestmark = pytest.mark.django_db


def _stored(case: Case) -> int:
    return Case.objects.values_list("revision", flat=True).get(pk=case.pk)


def _entries(event: str, case: Case):
    return AuditEntry.objects.filter(event=event, object_pk=str(case.pk)).order_by("pk")


def test_a_claim_with_the_revision_seen_raises_it_by_exactly_one():
    case = CaseFactory()
    with transaction.atomic():
        assert case_revision_claim(case=case, expected=1) == 2
    assert case.revision == 2 and _stored(case) == 2
    with transaction.atomic():
        case_revision_claim(case=case, expected=2)
    assert _stored(case) == 3


def test_a_claim_without_an_expected_revision_checks_nothing_but_still_raises_it():
    case = CaseFactory()
    Case.objects.filter(pk=case.pk).update(revision=5)  # moved on since the instance was read
    with transaction.atomic():
        assert case_revision_claim(case=case, expected=None) == 6
    assert case.revision == 6 and _stored(case) == 6


def test_a_stale_claim_raises_and_names_who_changed_the_case_and_when(owner, colleague):
    case = CaseFactory()
    case_tumour_type_set(case=Case.objects.get(pk=case.pk), tumour_type="meningioma", user=owner)
    with pytest.raises(CaseEditConflict) as conflict, transaction.atomic():
        case_revision_claim(case=case, expected=1, user=colleague)
    when = _entries("type.recorded", case).get().timestamp.strftime("%-d %b %Y, %H:%M")
    assert str(conflict.value) == (
        f"This case was changed by someone else (by owner at {when} UTC) since you opened it. Nothing was "
        "saved. The page now shows the case as it is: check their change, then make yours again if it is "
        "still needed."
    )
    assert (conflict.value.expected, conflict.value.current) == (1, 2)
    assert 'it is at revision "2", you sent If-Match "1". Nothing was saved: GET the case' in (
        conflict.value.api_detail
    )
    assert case.revision == 1 and _stored(case) == 2


def test_the_conflict_says_you_when_it_was_your_own_other_tab(owner):
    case = CaseFactory()
    case_tumour_type_set(case=Case.objects.get(pk=case.pk), tumour_type="meningioma", user=owner)
    with pytest.raises(CaseEditConflict, match=r"^You changed this case in another tab or window"):
        case_tumour_type_set(case=case, tumour_type="pituitary", user=owner, expected_revision=1)


def test_without_an_audited_edit_the_conflict_names_nobody():
    case = CaseFactory()
    Case.objects.filter(pk=case.pk).update(revision=2)
    with (
        pytest.raises(
            CaseEditConflict, match=r"^This case was changed by someone else since you opened it\."
        ),
        transaction.atomic(),
    ):
        case_revision_claim(case=case, expected=1)


def test_whatever_an_edit_raises_undoes_its_claim():
    case = CaseFactory()
    with pytest.raises(RuntimeError), case_edit(case=case, expected=1):
        assert case.revision == 2
        raise RuntimeError("the write failed")
    assert case.revision == 1 and _stored(case) == 1


def test_a_stale_type_records_nothing(owner, colleague):
    case = CaseFactory(tumour_type=None, tumour_type_source=None)
    case_tumour_type_set(case=Case.objects.get(pk=case.pk), tumour_type="meningioma", user=owner)
    with pytest.raises(CaseEditConflict):
        case_tumour_type_set(case=case, tumour_type="pituitary", user=colleague, expected_revision=1)
    stored = Case.objects.get(pk=case.pk)
    assert (stored.tumour_type, stored.revision) == ("meningioma", 2)
    [entry] = _entries("type.recorded", case)
    assert (entry.actor, entry.changes) == (owner, {"tumour_type": [None, "meningioma"]})


def test_recording_a_type_audits_the_recorded_type_it_replaces(owner):
    case = CaseFactory(tumour_type="glioma", tumour_type_source=TypeSource.PREDICTED)
    case_tumour_type_set(case=case, tumour_type="glioma", user=owner, expected_revision=1)  # confirmed
    case_tumour_type_set(case=case, tumour_type="pituitary", user=owner, expected_revision=2)
    assert [e.changes["tumour_type"] for e in _entries("type.recorded", case)] == [
        [None, "glioma"],  # a prediction was never recorded
        ["glioma", "pituitary"],
    ]
    assert _stored(case) == 3


def test_diagnoses_added_and_removed_raise_the_revision_and_are_audited_once_each(owner):
    case = CaseFactory()
    diagnosis, created, _ = diagnosis_record(case=case, name="Ependymoma", user=owner, expected_revision=1)
    assert created and case.revision == 2
    assert case_diagnosis_remove(case=case, diagnosis_id=diagnosis.pk, user=owner, expected_revision=2)
    assert _stored(case) == 3
    [added] = _entries("diagnosis.added", case)
    [removed] = _entries("diagnosis.removed", case)
    assert (added.actor, added.additional_data) == (
        owner,
        {"diagnosis": diagnosis.pk, "name": "Ependymoma", "new_in_catalogue": True},
    )
    assert (removed.actor, removed.additional_data) == (
        owner,
        {"diagnosis": diagnosis.pk, "name": "Ependymoma"},
    )


def test_a_diagnosis_edit_that_changes_nothing_keeps_the_revision(owner):
    case = CaseFactory()
    diagnosis, _, _ = diagnosis_record(case=case, name="Ependymoma", user=owner)
    again, created, _ = diagnosis_record(case=case, name="ependymoma", user=owner, expected_revision=2)
    assert again == diagnosis and not created
    assert case_diagnosis_remove(case=case, diagnosis_id=diagnosis.pk + 1, user=owner) is None
    assert case.revision == 2 and _stored(case) == 2
    assert _entries("diagnosis.added", case).count() == 1 and not _entries("diagnosis.removed", case).exists()


def test_a_stale_diagnosis_edit_adds_no_catalogue_entry_and_removes_no_link(owner, colleague):
    case = CaseFactory()
    ependymoma, _, _ = diagnosis_record(case=case, name="Ependymoma", user=owner, expected_revision=1)
    with pytest.raises(CaseEditConflict):
        diagnosis_record(case=case, name="Craniopharyngioma", user=colleague, expected_revision=1)
    with pytest.raises(CaseEditConflict):
        case_diagnosis_remove(case=case, diagnosis_id=ependymoma.pk, user=colleague, expected_revision=1)
    assert list(Diagnosis.objects.values_list("key", flat=True)) == ["ependymoma"]
    assert CaseDiagnosis.objects.filter(case=case, diagnosis=ependymoma).exists() and _stored(case) == 2


@pytest.mark.parametrize("value", [None, "", "abc", "0", "-3", "2.5"])
def test_a_form_without_a_usable_revision_is_refused(value):
    with pytest.raises(ValueError, match=re.escape(STALE_FORM_MESSAGE)):
        revision_from_form(value)


def test_a_forms_revision_is_read():
    assert revision_from_form("12") == 12


# === The race, on PostgreSQL ===


def _waiting_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0] > 0


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_transactions_expecting_the_same_revision_one_wins_the_other_waits_then_conflicts():
    """The first holds its claim open until the second is seen blocked on the row; then commits."""
    case = CaseFactory()
    claimed, outcome = threading.Event(), {}

    def edit(name: str, hold: bool):
        try:
            with transaction.atomic():
                case_revision_claim(case=Case.objects.get(pk=case.pk), expected=1)
                Case.objects.filter(pk=case.pk).update(notes=name)
                if hold:
                    claimed.set()
                    deadline = time.monotonic() + 20
                    while not _waiting_for_a_lock() and time.monotonic() < deadline:
                        time.sleep(0.02)
            outcome[name] = "saved"
        except CaseEditConflict:
            outcome[name] = "conflict"
        finally:
            connection.close()

    first = threading.Thread(target=edit, args=("first", True))
    first.start()
    assert claimed.wait(20)
    second = threading.Thread(target=edit, args=("second", False))
    second.start()
    first.join(30)
    second.join(30)
    assert outcome == {"first": "saved", "second": "conflict"}
    assert Case.objects.values_list("notes", "revision").get(pk=case.pk) == ("first", 2)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_clinicians_saving_a_type_at_once_exactly_one_is_recorded(owner, colleague):
    case = CaseFactory(tumour_type=None, tumour_type_source=None)
    barrier, outcome = threading.Barrier(2, timeout=20), {}

    def save(user, tumour_type: str):
        try:
            barrier.wait()
            case_tumour_type_set(
                case=Case.objects.get(pk=case.pk), tumour_type=tumour_type, user=user, expected_revision=1
            )
            outcome[tumour_type] = "saved"
        except CaseEditConflict:
            outcome[tumour_type] = "conflict"
        finally:
            connection.close()

    threads = [
        threading.Thread(target=save, args=(user, t))
        for user, t in ((owner, "meningioma"), (colleague, "pituitary"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcome.values()) == ["conflict", "saved"]
    [winner] = [t for t, result in outcome.items() if result == "saved"]
    stored = Case.objects.get(pk=case.pk)
    assert (stored.tumour_type, stored.revision) == (winner, 2)
    assert AuditEntry.objects.filter(event="type.recorded", object_pk=str(case.pk)).count() == 1

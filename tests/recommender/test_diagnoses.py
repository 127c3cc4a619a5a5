import threading

import pytest
from django.db import IntegrityError, connection

from cases.models import CaseDiagnosis, Diagnosis
from recommender import services
from recommender.selectors import diagnoses_search
from recommender.services import diagnosis_record
from segmentation.testing import make_case, needs_postgres


@pytest.fixture
def case(media_dir, clinician):
    return make_case(user=clinician, patient="P-DX")


@pytest.mark.django_db
def test_an_unseen_diagnosis_is_added_once_with_its_first_case_and_author(case, clinician, colleague):
    diagnosis, created, matched = diagnosis_record(
        case=case, name="  Glioblastoma   Multiforme ", user=clinician
    )
    assert created and matched is None
    assert diagnosis.name == "Glioblastoma Multiforme" and diagnosis.key == "glioblastoma multiforme"
    assert (
        diagnosis.added_automatically and diagnosis.first_case == case and diagnosis.created_by == clinician
    )
    other = make_case(patient="P-DX-2")
    again, created_again, matched_again = diagnosis_record(
        case=other, name="GLIOBLASTOMA, multiforme", user=colleague
    )
    assert again == diagnosis and not created_again and matched_again is None
    assert Diagnosis.objects.count() == 1 and CaseDiagnosis.objects.count() == 2


@pytest.mark.django_db
def test_a_near_duplicate_is_linked_to_the_existing_entry_and_reported(case, clinician):
    original, _, _ = diagnosis_record(case=case, name="Pituitary macroadenoma", user=clinician)
    diagnosis, created, matched = diagnosis_record(case=case, name="pituitary macroadenomma", user=clinician)
    assert diagnosis == original and matched == original and not created
    assert Diagnosis.objects.count() == 1
    assert CaseDiagnosis.objects.filter(case=case).count() == 1  # the same entry is recorded once per case


@pytest.mark.django_db
def test_a_different_grade_is_a_different_diagnosis(case, clinician):
    diagnosis_record(case=case, name="Grade II glioma", user=clinician)
    _, created, matched = diagnosis_record(case=case, name="Grade III glioma", user=clinician)
    assert created and matched is None and Diagnosis.objects.count() == 2


@pytest.mark.django_db
def test_an_empty_name_is_refused(case, clinician):
    with pytest.raises(ValueError):
        diagnosis_record(case=case, name=" ?! ", user=clinician)


@pytest.mark.django_db
def test_losing_the_insert_race_returns_the_winners_entry(case, clinician, colleague, monkeypatch):
    """What the loser of a race sees on any database: its INSERT fails on the unique key."""
    real_find = services.names.find_near_duplicate

    def other_doctor_commits_meanwhile(key, candidates):
        result = real_find(key, candidates)
        Diagnosis.objects.create(
            key=key, name="Ependymoma", added_automatically=True, created_by=colleague, first_case=case
        )
        return result

    def insert_that_loses(**kwargs):
        raise IntegrityError("UNIQUE constraint failed: cases_diagnosis.key")

    monkeypatch.setattr(services.names, "find_near_duplicate", other_doctor_commits_meanwhile)
    monkeypatch.setattr(Diagnosis.objects, "get_or_create", insert_that_loses)
    diagnosis, created, matched = diagnosis_record(case=case, name="ependymoma", user=clinician)
    monkeypatch.undo()
    assert not created and matched is None and diagnosis.created_by == colleague
    assert Diagnosis.objects.count() == 1 and CaseDiagnosis.objects.get(case=case).diagnosis == diagnosis


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_doctors_adding_the_same_new_diagnosis_at_once_create_one_entry(
    media_dir, clinician, colleague, monkeypatch
):
    cases = [make_case(patient="RACE-1", seed=1), make_case(patient="RACE-2", seed=2)]
    barrier = threading.Barrier(2, timeout=20)
    real_find = services.names.find_near_duplicate

    def find_then_wait(key, candidates):
        result = real_find(key, candidates)
        barrier.wait()  # both have looked and found nothing: now both insert
        return result

    monkeypatch.setattr(services.names, "find_near_duplicate", find_then_wait)
    results, errors = [], []

    def record(case, user):
        try:
            results.append(diagnosis_record(case=case, name="Hemangioblastoma", user=user))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=record, args=(c, u))
        for c, u in zip(cases, (clinician, colleague), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert Diagnosis.objects.filter(key="hemangioblastoma").count() == 1
    assert sorted(created for _, created, _ in results) == [False, True]
    assert len({d.pk for d, _, _ in results}) == 1
    assert CaseDiagnosis.objects.count() == 2


@pytest.mark.django_db
def test_autocomplete_matches_every_word_typed_most_used_first(case, clinician):
    diagnosis_record(case=case, name="Atypical meningioma", user=clinician)
    diagnosis_record(case=case, name="Meningioma, WHO grade I", user=clinician)
    diagnosis_record(case=make_case(patient="P-AC"), name="Meningioma, WHO grade I", user=clinician)
    assert [d.name for d in diagnoses_search(q="MÉNINGIOMA")] == [
        "Meningioma, WHO grade I",
        "Atypical meningioma",
    ]
    assert [d.name for d in diagnoses_search(q="atyp men")] == ["Atypical meningioma"]

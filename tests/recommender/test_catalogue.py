"""Curating the diagnosis catalogue: merge, rename, retire, and what recording a name does afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from cases.models import CaseDiagnosis, Diagnosis
from recommender.catalogue import (
    CatalogueError,
    diagnosis_merge,
    diagnosis_merge_note,
    diagnosis_rename,
    diagnosis_retire,
)
from recommender.names import normalise
from recommender.selectors import diagnoses_search
from recommender.services import diagnosis_record
from tests.conftest import CaseFactory, UserFactory

pytestmark = pytest.mark.django_db


def entry(name: str) -> Diagnosis:
    return Diagnosis.objects.create(name=name, key=normalise(name))


def link(case, diagnosis, user, *, days_ago: int = 0) -> CaseDiagnosis:
    row = CaseDiagnosis.objects.create(case=case, diagnosis=diagnosis, recorded_by=user)
    CaseDiagnosis.objects.filter(pk=row.pk).update(recorded_at=timezone.now() - timedelta(days=days_ago))
    row.refresh_from_db()
    return row


def entries(event: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(event=event))


@pytest.fixture
def curator():
    return UserFactory(username="curator", is_staff=True)


@pytest.fixture
def doctors():
    return UserFactory(username="dr_first"), UserFactory(username="dr_second")


# === Merge ===


def test_a_merge_moves_every_link_and_a_case_linked_to_both_keeps_the_older_one(curator, doctors):
    first, second = doctors
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    only_source, both, only_target = CaseFactory(), CaseFactory(), CaseFactory()
    link(only_source, gbm, first)
    older = link(both, gbm, first, days_ago=10)  # older than the target's link: its author and time stay
    link(both, glioblastoma, second, days_ago=2)
    link(only_target, glioblastoma, second)

    assert diagnosis_merge(source=gbm, target=glioblastoma, user=curator) == 2

    assert not CaseDiagnosis.objects.filter(diagnosis=gbm).exists()
    assert set(CaseDiagnosis.objects.filter(diagnosis=glioblastoma).values_list("case_id", flat=True)) == {
        only_source.pk,
        both.pk,
        only_target.pk,
    }
    kept = CaseDiagnosis.objects.get(case=both)
    assert kept.diagnosis == glioblastoma and kept.recorded_by == first
    assert kept.recorded_at == older.recorded_at
    gbm.refresh_from_db()
    assert gbm.merged_into == glioblastoma and gbm.retired_at is not None


def test_a_merge_where_the_target_link_is_older_keeps_the_targets_author(curator, doctors):
    first, second = doctors
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    case = CaseFactory()
    link(case, gbm, first, days_ago=1)
    link(case, glioblastoma, second, days_ago=5)
    diagnosis_merge(source=gbm, target=glioblastoma, user=curator)
    assert CaseDiagnosis.objects.get(case=case).recorded_by == second


def test_a_merge_writes_one_audit_entry_on_the_source(curator, doctors):
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    link(CaseFactory(), gbm, doctors[0])
    diagnosis_merge(source=gbm, target=glioblastoma, user=curator)
    (logged,) = entries("catalogue.merged")
    assert logged.actor == curator and logged.object_pk == str(gbm.pk)
    assert logged.additional_data["target"] == glioblastoma.pk
    assert logged.additional_data["target_name"] == "Glioblastoma"
    assert logged.additional_data["links_moved"] == 1
    assert AuditEntry.objects.count() == 1


def test_entries_merged_into_the_source_follow_it_to_the_new_target(curator):
    a, b, c = entry("GBM"), entry("Glioblastoma multiforme"), entry("Glioblastoma")
    diagnosis_merge(source=a, target=b, user=curator)
    diagnosis_merge(source=b, target=c, user=curator)
    a.refresh_from_db()
    assert a.merged_into == c  # no chain a -> b -> c


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("itself", "cannot be merged into itself"),
        ("retired target", "is retired"),
        ("merged target", "merge into “Glioblastoma” instead"),
        ("merged source", "was merged into"),
    ],
)
def test_a_merge_is_refused_into_itself_a_retired_or_merged_entry_and_changes_nothing(
    curator, doctors, setup, message
):
    source, target, final = entry("GBM"), entry("Glioblastoma multiforme"), entry("Glioblastoma")
    link(CaseFactory(), source, doctors[0])
    if setup == "itself":
        target = source
    elif setup == "retired target":
        Diagnosis.objects.filter(pk=target.pk).update(retired_at=timezone.now())
    elif setup == "merged target":
        Diagnosis.objects.filter(pk=target.pk).update(retired_at=timezone.now(), merged_into=final)
    else:
        Diagnosis.objects.filter(pk=source.pk).update(retired_at=timezone.now(), merged_into=final)
    with pytest.raises(CatalogueError, match=message):
        diagnosis_merge(source=source, target=target, user=curator)
    assert CaseDiagnosis.objects.get().diagnosis == source
    assert not entries("catalogue.merged")


# === Rename ===


def test_a_rename_changes_the_name_and_key_and_is_audited(curator):
    gbm = entry("GBM")
    diagnosis_rename(diagnosis=gbm, name="  Glioblastoma,  IDH-wildtype ", user=curator)
    gbm.refresh_from_db()
    assert gbm.name == "Glioblastoma, IDH-wildtype" and gbm.key == "glioblastoma idh wildtype"
    (logged,) = entries("catalogue.renamed")
    assert logged.changes == {"name": ["GBM", "Glioblastoma, IDH-wildtype"]}
    assert logged.actor == curator and logged.object_pk == str(gbm.pk)


def test_a_rename_onto_another_entrys_key_is_refused_and_suggests_a_merge(curator):
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    with pytest.raises(CatalogueError, match=f"“Glioblastoma” \\(entry {glioblastoma.pk}\\).*merge “GBM”"):
        diagnosis_rename(diagnosis=gbm, name="glioblastoma!", user=curator)
    gbm.refresh_from_db()
    assert gbm.name == "GBM" and not entries("catalogue.renamed")


def test_a_rename_that_only_changes_the_spelling_of_its_own_key_is_allowed(curator):
    gbm = entry("glioblastoma")
    diagnosis_rename(diagnosis=gbm, name="Glioblastoma", user=curator)
    gbm.refresh_from_db()
    assert gbm.name == "Glioblastoma" and gbm.key == "glioblastoma"


@pytest.mark.parametrize(("name", "message"), [(" ?! ", "letter or digit"), ("x" * 201, "200 characters")])
def test_a_rename_to_an_unusable_name_is_refused(curator, name, message):
    with pytest.raises(CatalogueError, match=message):
        diagnosis_rename(diagnosis=entry("GBM"), name=name, user=curator)


# === Retire ===


def test_a_retired_entry_is_not_offered_nor_recorded_anew_but_existing_links_stay(curator, doctors):
    astro = entry("Astrocytoma")
    case = CaseFactory()
    link(case, astro, doctors[0])
    diagnosis_retire(diagnosis=astro, user=curator)

    assert list(diagnoses_search(q="astro")) == []
    assert CaseDiagnosis.objects.filter(case=case, diagnosis=astro).exists()
    other = CaseFactory()
    for typed in ("astrocytoma", "Astrocytomma"):  # the same key, and a near-duplicate of it
        with pytest.raises(ValueError, match="retired"):
            diagnosis_record(case=other, name=typed, user=doctors[1])
    assert not other.case_diagnoses.exists()
    (logged,) = entries("catalogue.retired")
    assert logged.actor == curator and logged.additional_data == {"cases": 1}


def test_a_restored_entry_is_offered_again(curator):
    astro = entry("Astrocytoma")
    diagnosis_retire(diagnosis=astro, user=curator)
    with pytest.raises(CatalogueError, match="already retired"):
        diagnosis_retire(diagnosis=astro, user=curator)
    diagnosis_retire(diagnosis=astro, user=curator, retired=False)
    assert list(diagnoses_search(q="astro")) == [astro]
    assert len(entries("catalogue.retired")) == 1 and len(entries("catalogue.restored")) == 1


# === Recording after a merge ===


def test_a_name_of_a_merged_entry_records_the_target_and_says_so(curator, doctors):
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    diagnosis_merge(source=gbm, target=glioblastoma, user=curator)
    case = CaseFactory()
    recorded, created, matched = diagnosis_record(case=case, name="gbm", user=doctors[0])
    assert recorded == glioblastoma and matched == glioblastoma and not created
    assert list(case.case_diagnoses.values_list("diagnosis", flat=True)) == [glioblastoma.pk]
    assert diagnosis_merge_note(typed="gbm", recorded=recorded) == (
        "“GBM” was merged into “Glioblastoma” in the catalogue; recorded as “Glioblastoma”."
    )
    assert diagnosis_merge_note(typed="glioblastoma", recorded=recorded) is None
    assert list(diagnoses_search(q="g")) == [glioblastoma]

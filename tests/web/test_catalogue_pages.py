"""The administrators' curation pages of the diagnosis catalogue: rename, retire, merge, and what the
catalogue's pages and the recording form show afterwards."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from audit.models import AuditEntry
from cases.models import CaseDiagnosis, Diagnosis
from recommender.names import normalise
from tests.conftest import CaseFactory

pytestmark = pytest.mark.django_db


def entry(name: str) -> Diagnosis:
    return Diagnosis.objects.create(name=name, key=normalise(name))


def said(response) -> list[str]:
    """The messages the request left for the next page (with those earlier requests left unread)."""
    return [str(m) for m in get_messages(response.wsgi_request)]


def last_said(response) -> str:
    return said(response)[-1]


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


def test_an_admin_renames_an_entry_and_is_told(admin_client, admin):
    gbm = entry("GBM")
    response = admin_client.post(f"/diagnoses/{gbm.pk}/rename/", {"name": "Glioblastoma"})
    assert response.status_code == 302 and response.url == f"/diagnoses/{gbm.pk}/#curate"
    assert said(response) == ["“GBM” is now called “Glioblastoma”."]
    gbm.refresh_from_db()
    assert (gbm.name, gbm.key) == ("Glioblastoma", "glioblastoma")
    assert AuditEntry.objects.get(event="catalogue.renamed").actor == admin


def test_a_rename_onto_another_entry_is_refused_with_a_message(admin_client):
    gbm, _ = entry("GBM"), entry("Glioblastoma")
    response = admin_client.post(f"/diagnoses/{gbm.pk}/rename/", {"name": "glioblastoma"})
    (message,) = said(response)
    assert "merge “GBM” into “Glioblastoma” instead" in message
    assert Diagnosis.objects.get(pk=gbm.pk).name == "GBM"


def test_an_admin_merges_by_the_targets_name_and_the_cases_move(admin_client):
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    case = CaseFactory()
    CaseDiagnosis.objects.create(case=case, diagnosis=gbm)
    response = admin_client.post(f"/diagnoses/{gbm.pk}/merge/", {"target": " GLIOBLASTOMA "})
    assert response.status_code == 302 and response.url == f"/diagnoses/{glioblastoma.pk}/"
    assert said(response) == [
        "Merged “GBM” into “Glioblastoma”: 1 case moved. Typing “GBM” now records “Glioblastoma”."
    ]
    assert CaseDiagnosis.objects.get(case=case).diagnosis == glioblastoma
    page = admin_client.get(f"/diagnoses/{gbm.pk}/").content.decode()
    assert "Merged</span>" in page and 'id="curate"' not in page  # nothing left to curate on it


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "Name the entry to merge into."),
        ("Nothing like it", "No catalogue entry is called “Nothing like it”"),
    ],
)
def test_a_merge_into_an_unknown_entry_is_refused_with_a_message(admin_client, target, message):
    gbm = entry("GBM")
    response = admin_client.post(f"/diagnoses/{gbm.pk}/merge/", {"target": target})
    assert response.url == f"/diagnoses/{gbm.pk}/#curate" and message in said(response)[0]
    assert Diagnosis.objects.get(pk=gbm.pk).merged_into is None


def test_a_merge_into_itself_is_refused_with_a_message(admin_client):
    gbm = entry("GBM")
    response = admin_client.post(f"/diagnoses/{gbm.pk}/merge/", {"target": "gbm"})
    assert said(response) == ["An entry cannot be merged into itself: choose another entry."]


def test_an_admin_retires_and_restores_an_entry(admin_client):
    astro = entry("Astrocytoma")
    response = admin_client.post(f"/diagnoses/{astro.pk}/retire/", {"action": "retire"})
    assert "is retired" in said(response)[0]
    assert Diagnosis.objects.get(pk=astro.pk).retired_at is not None
    again = admin_client.post(f"/diagnoses/{astro.pk}/retire/", {"action": "retire"})
    assert last_said(again) == "“Astrocytoma” is already retired."
    admin_client.post(f"/diagnoses/{astro.pk}/retire/", {"action": "restore"})
    assert Diagnosis.objects.get(pk=astro.pk).retired_at is None


def test_the_list_marks_retired_and_merged_entries_and_can_hide_them(admin_client):
    astro, gbm, glioblastoma = entry("Astrocytoma"), entry("GBM"), entry("Glioblastoma")
    admin_client.post(f"/diagnoses/{astro.pk}/retire/", {"action": "retire"})
    admin_client.post(f"/diagnoses/{gbm.pk}/merge/", {"target": "Glioblastoma"})
    page = admin_client.get("/diagnoses/")
    rows = {d.name: d for d in page.context["page"]}
    assert set(rows) == {"Astrocytoma", "GBM", "Glioblastoma"}
    html = page.content.decode()
    assert '<span class="badge state-rejected">retired</span>' in html
    assert (
        '<span class="badge state-rejected">merged</span> <span class="muted small">into Glioblastoma' in html
    )
    in_use = admin_client.get("/diagnoses/?in_use=1")
    assert [d.name for d in in_use.context["page"]] == [glioblastoma.name]


def test_recording_a_merged_name_on_a_case_records_the_target(owner_client, admin):
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    Diagnosis.objects.filter(pk=gbm.pk).update(merged_into=glioblastoma, retired_at="2026-01-01T00:00Z")
    case = CaseFactory()
    revision = type(case).objects.values_list("revision", flat=True).get(pk=case.pk)
    response = owner_client.post(f"/cases/{case.pk}/diagnoses/", {"name": "gbm", "revision": revision})
    assert CaseDiagnosis.objects.get(case=case).diagnosis == glioblastoma
    assert last_said(response) == (
        "“GBM” was merged into “Glioblastoma” in the catalogue; recorded as “Glioblastoma”."
    )


def test_recording_a_retired_name_is_refused_with_a_message(owner_client):
    astro = entry("Astrocytoma")
    Diagnosis.objects.filter(pk=astro.pk).update(retired_at="2026-01-01T00:00Z")
    case = CaseFactory()
    revision = type(case).objects.values_list("revision", flat=True).get(pk=case.pk)
    response = owner_client.post(
        f"/cases/{case.pk}/diagnoses/", {"name": "astrocytoma", "revision": revision}
    )
    assert not case.case_diagnoses.exists()
    assert "was retired from the diagnosis catalogue" in said(response)[0]


def test_only_an_admin_sees_the_curate_section(client, admin, owner):
    gbm = entry("GBM")
    client.force_login(owner)
    assert 'id="curate"' not in client.get(f"/diagnoses/{gbm.pk}/").content.decode()
    client.force_login(admin)
    page = client.get(f"/diagnoses/{gbm.pk}/").content.decode()
    assert 'id="curate"' in page and f'action="/diagnoses/{gbm.pk}/merge/"' in page


@pytest.mark.parametrize("route", ["rename", "retire", "merge"])
def test_a_clinician_cannot_curate(client, owner, route):
    gbm, _ = entry("GBM"), entry("Glioblastoma")
    client.force_login(owner)
    response = client.post(
        f"/diagnoses/{gbm.pk}/{route}/", {"name": "Renamed", "target": "Glioblastoma", "action": "retire"}
    )
    assert response.status_code == 403
    gbm.refresh_from_db()
    assert (gbm.name, gbm.retired_at, gbm.merged_into) == ("GBM", None, None)
    assert not AuditEntry.objects.filter(event__startswith="catalogue.").exists()


def test_the_admin_site_cannot_rename_retire_or_merge_around_the_rules(admin_client):
    gbm, glioblastoma = entry("GBM"), entry("Glioblastoma")
    admin_client.post(
        f"/admin/cases/diagnosis/{gbm.pk}/change/",
        {"name": "Renamed", "key": "renamed", "merged_into": glioblastoma.pk, "tumour_type": ""},
    )
    gbm.refresh_from_db()
    assert (gbm.name, gbm.key, gbm.merged_into) == ("GBM", "gbm", None)

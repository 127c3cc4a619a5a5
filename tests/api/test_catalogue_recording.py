"""Recording a diagnosis through the API after the catalogue was curated: a merged name records the entry
it was merged into and says so; a retired one is a 400 problem; the autocomplete offers neither."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cases.models import CaseDiagnosis, Diagnosis
from recommender.names import normalise
from tests.conftest import CaseFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(owner):
    client = APIClient()
    client.force_authenticate(user=owner)
    return client


@pytest.fixture
def catalogue():
    """GBM merged into Glioblastoma, Astrocytoma retired."""
    made = {
        name: Diagnosis.objects.create(name=name, key=normalise(name))
        for name in ("GBM", "Glioblastoma", "Astrocytoma")
    }
    Diagnosis.objects.filter(pk=made["GBM"].pk).update(
        merged_into=made["Glioblastoma"], retired_at=timezone.now()
    )
    Diagnosis.objects.filter(pk=made["Astrocytoma"].pk).update(retired_at=timezone.now())
    return made


def test_a_merged_name_records_its_target_and_says_so(api, catalogue):
    case = CaseFactory()
    response = api.post(f"/api/cases/{case.pk}/diagnoses/", {"name": "gbm"}, format="json")
    assert response.status_code == 200, response.json()  # 201 only for a new catalogue entry
    body = response.json()
    assert body["diagnosis"]["id"] == catalogue["Glioblastoma"].pk
    assert body["matched_existing"]["id"] == catalogue["Glioblastoma"].pk
    assert (
        body["message"]
        == "“GBM” was merged into “Glioblastoma” in the catalogue; recorded as “Glioblastoma”."
    )
    assert CaseDiagnosis.objects.get(case=case).diagnosis == catalogue["Glioblastoma"]


def test_a_retired_name_is_a_400_problem(api, catalogue):
    case = CaseFactory()
    response = api.post(f"/api/cases/{case.pk}/diagnoses/", {"name": "Astrocytoma"}, format="json")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert "was retired from the diagnosis catalogue" in response.json()["errors"]["name"][0]
    assert not case.case_diagnoses.exists()


def test_the_autocomplete_offers_only_entries_in_use(api, catalogue):
    response = api.get("/api/diagnoses/")
    assert [d["name"] for d in response.json()["results"]] == ["Glioblastoma"]

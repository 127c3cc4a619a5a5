"""The API's conflict-safe edits: a case's ETag is its revision; writes that send If-Match are refused (409)
when the case changed since, and answer with the case's new ETag when they go through."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases.models import Case, CaseDiagnosis, Diagnosis, TypeSource
from clinic.api.errors import PROBLEM_CONTENT_TYPE
from recommender.services import diagnosis_record
from segmentation.testing import make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(media_dir, clinician):
    return make_case(user=clinician, patient="ETAG-1", seed=1, size=64)


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def mine(clinician):
    return _client(clinician)


@pytest.fixture
def theirs(colleague):
    return _client(colleague)


def _conflict(response) -> dict:
    assert response.status_code == 409 and response["Content-Type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["status"] == 409 and body["title"] == "Conflict"
    return body


def test_a_case_sends_its_revision_as_a_strong_etag_and_each_edit_raises_it_by_one(mine, case):
    url = f"/api/cases/{case.pk}/"
    assert mine.get(url)["ETag"] == '"1"'
    saved = mine.patch(url, {"tumour_type": "meningioma"}, format="json", headers={"If-Match": '"1"'})
    assert saved.status_code == 200 and saved["ETag"] == '"2"'
    assert saved.json()["tumour_type"] == "meningioma" and saved.json()["tumour_type_source"] == "clinician"
    assert mine.get(url)["ETag"] == '"2"'


def test_a_stale_etag_is_refused_with_409_and_nothing_changes(mine, theirs, case, clinician, colleague):
    url = f"/api/cases/{case.pk}/"
    seen_by_me, seen_by_them = mine.get(url)["ETag"], theirs.get(url)["ETag"]
    mine.patch(url, {"tumour_type": "meningioma"}, format="json", headers={"If-Match": seen_by_me})

    refused = theirs.patch(
        url, {"tumour_type": "pituitary"}, format="json", headers={"If-Match": seen_by_them}
    )
    body = _conflict(refused)
    assert body["detail"].startswith("This case was changed (by dr_owner at ")
    assert 'it is at revision "2", you sent If-Match "1". Nothing was saved' in body["detail"]
    assert refused["ETag"] == '"2"'  # the current one, to read the case again with
    stored = Case.objects.get(pk=case.pk)
    assert (stored.tumour_type, stored.tumour_type_source, stored.revision) == (
        "meningioma",
        TypeSource.CLINICIAN,
        2,
    )

    retried = theirs.patch(
        url, {"tumour_type": "pituitary"}, format="json", headers={"If-Match": refused["ETag"]}
    )
    assert retried.status_code == 200 and retried["ETag"] == '"3"'
    entries = AuditEntry.objects.filter(event="type.recorded", object_pk=str(case.pk)).order_by("pk")
    assert [(e.actor, e.changes["tumour_type"]) for e in entries] == [
        (clinician, [None, "meningioma"]),
        (colleague, ["meningioma", "pituitary"]),
    ]


def test_diagnosis_writes_check_if_match_and_answer_the_new_etag(mine, theirs, case):
    url = f"/api/cases/{case.pk}/diagnoses/"
    stale = theirs.get(f"/api/cases/{case.pk}/")["ETag"]
    added = mine.post(url, {"name": "Ependymoma"}, format="json", headers={"If-Match": stale})
    assert added.status_code == 201 and added["ETag"] == '"2"'
    ependymoma = Diagnosis.objects.get(key="ependymoma")

    _conflict(theirs.post(url, {"name": "Craniopharyngioma"}, format="json", headers={"If-Match": stale}))
    assert not Diagnosis.objects.filter(key="craniopharyngioma").exists()
    _conflict(theirs.delete(f"{url}{ependymoma.pk}/", headers={"If-Match": stale}))
    assert CaseDiagnosis.objects.filter(case=case, diagnosis=ependymoma).exists()

    removed = theirs.delete(f"{url}{ependymoma.pk}/", headers={"If-Match": added["ETag"]})
    assert removed.status_code == 204 and removed["ETag"] == '"3"'
    assert not CaseDiagnosis.objects.filter(case=case).exists()
    assert [e.event for e in AuditEntry.objects.filter(event__startswith="diagnosis.").order_by("pk")] == [
        "diagnosis.added",
        "diagnosis.removed",
    ]


def test_without_if_match_a_write_checks_nothing_and_still_raises_the_revision(mine, case, clinician):
    diagnosis_record(case=case, name="Ependymoma", user=clinician)  # revision 2, unseen by this client
    response = mine.patch(f"/api/cases/{case.pk}/", {"tumour_type": "glioma"}, format="json")
    assert response.status_code == 200 and response["ETag"] == '"3"'
    star = mine.patch(
        f"/api/cases/{case.pk}/", {"tumour_type": "pituitary"}, format="json", headers={"If-Match": "*"}
    )
    assert star.status_code == 200 and star["ETag"] == '"4"'


@pytest.mark.parametrize("value", ["2", 'W/"1"', '"1", "2"', '"one"', '""'])
def test_a_malformed_if_match_is_a_400_and_changes_nothing(mine, case, value):
    response = mine.patch(
        f"/api/cases/{case.pk}/", {"tumour_type": "glioma"}, format="json", headers={"If-Match": value}
    )
    assert response.status_code == 400 and response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["errors"] == {
        "If-Match": [
            "If-Match takes the ETag of GET /api/cases/{id}/ as it was sent, one value in double quotes "
            '(e.g. "3"), or * (no check).'
        ]
    }
    assert Case.objects.values_list("revision", flat=True).get(pk=case.pk) == 1


def test_setting_the_type_needs_the_set_tumour_type_permission(viewer, case):
    response = _client(viewer).patch(f"/api/cases/{case.pk}/", {"tumour_type": "glioma"}, format="json")
    assert response.status_code == 403
    assert Case.objects.values_list("tumour_type", "revision").get(pk=case.pk) == (None, 1)

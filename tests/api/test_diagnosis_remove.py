"""DELETE /api/cases/{case_id}/diagnoses/{diagnosis_id}/ unlinks a diagnosis; the catalogue entry stays."""

import pytest
from rest_framework.test import APIClient

from cases.models import CaseDiagnosis, Diagnosis
from recommender.selectors import diagnoses_search
from recommender.services import diagnosis_record
from segmentation.testing import make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    return client


def test_deleting_a_case_diagnosis_unlinks_it_and_keeps_the_entry(api, clinician, media_dir):
    case = make_case(user=clinician, patient="DEL-1", seed=1, size=64)
    other = make_case(user=clinician, patient="DEL-2", seed=2, size=64)
    diagnosis, _, _ = diagnosis_record(case=case, name="Pituitary macroadenoma", user=clinician)
    diagnosis_record(case=other, name="Pituitary macroadenoma", user=clinician)

    response = api.delete(f"/api/cases/{case.pk}/diagnoses/{diagnosis.pk}/")

    assert response.status_code == 204 and not response.content
    assert not CaseDiagnosis.objects.filter(case=case).exists()
    assert CaseDiagnosis.objects.filter(case=other, diagnosis=diagnosis).exists()
    assert Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    # The catalogue's use count reads the links live.
    assert diagnoses_search(q="pituitary", limit=None).get(pk=diagnosis.pk).uses == 1
    assert api.get(f"/api/cases/{case.pk}/").json()["diagnoses"] == []


def test_deleting_a_link_that_does_not_exist_is_a_404_problem(api, clinician, media_dir):
    case = make_case(user=clinician, patient="DEL-3", seed=3, size=64)
    diagnosis, _, _ = diagnosis_record(
        case=make_case(user=clinician, seed=4, size=64), name="Glioma", user=clinician
    )
    for url in (
        f"/api/cases/{case.pk}/diagnoses/{diagnosis.pk}/",
        f"/api/cases/999999/diagnoses/{diagnosis.pk}/",
    ):
        response = api.delete(url)
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json", url

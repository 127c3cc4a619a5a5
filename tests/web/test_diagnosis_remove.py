"""A clinician removes a diagnosis from a case on the case page; the catalogue entry stays."""

import logging

import pytest
from django.urls import reverse

from cases.models import CaseDiagnosis, Diagnosis
from recommender.services import diagnosis_record
from tests.web.builders import current_revision

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded(segmented_case, owner) -> Diagnosis:
    diagnosis, _, _ = diagnosis_record(case=segmented_case, name="Meningioma WHO grade I", user=owner)
    return diagnosis


def test_the_diagnoses_panel_has_a_remove_button_per_diagnosis(owner_client, segmented_case, recorded):
    html = owner_client.get(f"/cases/{segmented_case.pk}/").content.decode()
    url = reverse("case-diagnosis-remove", args=[segmented_case.pk, recorded.pk])
    form = html[html.index(f'action="{url}"') :]
    form = form[: form.index("</form>")]
    assert "csrfmiddlewaretoken" in form
    assert '<button type="submit"' in form and "Remove “Meningioma WHO grade I” from this case" in form


def test_removing_unlinks_the_diagnosis_and_keeps_the_catalogue_entry(
    owner_client, segmented_case, recorded, owner, caplog
):
    url = reverse("case-diagnosis-remove", args=[segmented_case.pk, recorded.pk])
    with caplog.at_level(logging.INFO, logger="recommender.services"):
        response = owner_client.post(url, {"revision": current_revision(segmented_case)}, follow=True)
    assert response.redirect_chain[-1][0] == f"/cases/{segmented_case.pk}/#diagnoses"
    html = response.content.decode()
    assert "Removed “Meningioma WHO grade I” from this case" in html and "None recorded." in html
    assert not CaseDiagnosis.objects.filter(case=segmented_case).exists()
    assert Diagnosis.objects.filter(pk=recorded.pk).exists()
    [line] = [r.getMessage() for r in caplog.records if "diagnosis removed" in r.getMessage()]
    assert (
        f"user={owner.pk}" in line
        and f"case={segmented_case.pk}" in line
        and f"diagnosis={recorded.pk}" in line
    )


def test_removing_a_diagnosis_the_case_does_not_have_is_a_404(owner_client, segmented_case, recorded):
    url = reverse("case-diagnosis-remove", args=[segmented_case.pk, recorded.pk])
    assert owner_client.post(url, {"revision": current_revision(segmented_case)}).status_code == 302
    assert owner_client.post(url, {"revision": current_revision(segmented_case)}).status_code == 404
    elsewhere = reverse("case-diagnosis-remove", args=[999999, recorded.pk])
    assert owner_client.post(elsewhere, {"revision": 1}).status_code == 404


def test_removing_needs_a_post_from_a_signed_in_user(client, owner_client, segmented_case, recorded):
    url = reverse("case-diagnosis-remove", args=[segmented_case.pk, recorded.pk])
    assert owner_client.get(url).status_code == 405
    client.logout()
    response = client.post(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert CaseDiagnosis.objects.filter(case=segmented_case, diagnosis=recorded).exists()

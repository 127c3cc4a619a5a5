"""Who may see what: every page needs a signed-in user; only staff reach the admin site."""

import pytest
from django.urls import reverse

from cases.models import Diagnosis
from clinic.urls import urlpatterns as page_patterns
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _pages(case, run, diagnosis):
    c, r = case.pk, run.pk
    return [
        ("case-list", []),
        ("upload", []),
        ("patient-list", []),
        ("patient-detail", [case.patient_id]),
        ("diagnosis-list", []),
        ("diagnosis-detail", [diagnosis.pk]),
        ("case-detail", [c]),
        ("case-state", [c]),
        ("case-slice", [c]),
        ("case-thumbnail", [c]),
        ("case-overlay", [c]),
        ("case-best-mask", [c]),
        ("case-mask", [c, "png"]),
        ("case-mask", [c, "nii.gz"]),
        ("run-mask", [c, r, "png"]),
        ("run-mask", [c, r, "nii.gz"]),
        ("case-correct", [c]),
        ("case-tumour-type", [c]),
        ("case-diagnosis-add", [c]),
        ("case-diagnosis-remove", [c, diagnosis.pk]),
        ("case-similar", [c]),
        ("case-report", [c]),
        ("run-review", [r]),
    ]


def test_every_page_route_has_a_row_here(segmented_case):
    """A new page without a row in ``_pages`` fails, so no page escapes the sign-in check below."""
    run = segmented_case.segmentation_runs.first()
    diagnosis = Diagnosis(pk=1, name="x", key="x")
    assert {p.name for p in page_patterns} == {name for name, _ in _pages(segmented_case, run, diagnosis)}


def test_an_anonymous_visitor_is_sent_to_sign_in_from_every_page(client, segmented_case):
    run = segmented_case.segmentation_runs.first()
    diagnosis = Diagnosis.objects.create(name="Meningioma", key="meningioma")
    for name, args in _pages(segmented_case, run, diagnosis):
        url = reverse(name, args=args)
        for method in (client.get, client.post):
            response = method(url)
            if response.status_code == 405:  # a POST-only action refuses GET before asking who you are
                continue
            assert response.status_code == 302, (method, url)
            assert response["Location"].startswith(f"/accounts/login/?next={url}"), url


def test_an_anonymous_visitor_gets_no_data_from_the_api(client, segmented_case):
    assert client.get(f"/api/cases/{segmented_case.pk}/").status_code in (401, 403)


def test_the_sign_in_page_has_labelled_inputs(client):
    html = client.get("/accounts/login/").content.decode()
    assert 'for="id_username"' in html and 'for="id_password"' in html


def test_a_clinician_cannot_reach_the_admin_pages(owner_client):
    for url in ("/admin/", "/admin/cases/case/", "/admin/auth/user/", "/admin/segmentation/segmentationrun/"):
        response = owner_client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    assert b'href="/admin/"' not in owner_client.get("/").content


def test_an_admin_reaches_the_admin_pages(client, admin):
    client.force_login(admin)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/cases/case/").status_code == 200
    assert b'href="/admin/"' in client.get("/").content


def test_signing_in_and_out(client, owner):
    response = client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302

"""What each role sees on the pages: only the actions it may take. Who may open which route at all is
tests/security/test_roles_matrix.py's table; the sign-in itself and the admin site are here."""

import json

import pytest
from django.urls import reverse

from recommender.services import diagnosis_record
from tests.conftest import PASSWORD, UserFactory, with_roles

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded(segmented_case, owner):
    diagnosis_record(case=segmented_case, name="Meningioma", user=owner)
    return segmented_case


def _signed_in(client, *roles, **fields):
    client.force_login(with_roles(UserFactory(username="-".join(roles) or "nobody", **fields), *roles))
    return client


def test_a_viewer_reads_the_case_but_is_offered_no_action(client, recorded):
    _signed_in(client, "viewer")
    page = client.get(reverse("case-detail", args=[recorded.pk])).content.decode()
    assert "Printable report" in page and "Meningioma" in page
    for action in ("Correct mask", "Save type", "Remove from this case", "Record a diagnosis"):
        assert action not in page, action
    assert reverse("upload") not in client.get(reverse("case-list")).content.decode()
    state = json.loads(client.get(reverse("case-state", args=[recorded.pk])).content)
    assert state["can"] == dict.fromkeys(
        ("correct", "review", "set_type", "add_diagnosis", "remove_diagnosis"), False
    )


def test_a_clinician_is_offered_the_edits_but_not_the_review(client, recorded):
    _signed_in(client, "clinician")
    page = client.get(reverse("case-detail", args=[recorded.pk])).content.decode()
    for action in ("Correct mask", "Save type", "Remove from this case", "Record a diagnosis"):
        assert action in page, action
    assert reverse("upload") in client.get(reverse("case-list")).content.decode()
    state = json.loads(client.get(reverse("case-state", args=[recorded.pk])).content)
    assert state["can"] == {
        "correct": True,
        "review": False,
        "set_type": True,
        "add_diagnosis": True,
        "remove_diagnosis": True,
    }


def test_a_reviewer_may_also_review(client, recorded):
    _signed_in(client, "reviewer")
    state = json.loads(client.get(reverse("case-state", args=[recorded.pk])).content)
    assert all(state["can"].values())


def test_the_refusal_page_says_what_happened_and_what_to_do(client, segmented_case, viewer):
    client.force_login(viewer)
    response = client.post(reverse("case-tumour-type", args=[segmented_case.pk]), {"tumour_type": "glioma"})
    page = response.content.decode()
    assert response.status_code == 403 and "You are not allowed to do this" in page
    assert "Ask an administrator" in page and 'class="site-header"' in page  # the site's layout
    segmented_case.refresh_from_db()
    assert segmented_case.tumour_type is None  # nothing was recorded


def test_the_sign_in_page_has_labelled_inputs(client):
    html = client.get("/accounts/login/").content.decode()
    assert 'for="id_username"' in html and 'for="id_password"' in html


def test_a_clinician_cannot_reach_the_admin_pages(owner_client):
    for url in ("/admin/", "/admin/cases/case/", "/admin/auth/user/", "/admin/segmentation/segmentationrun/"):
        response = owner_client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    assert b'href="/admin/"' not in owner_client.get("/").content


def test_an_admin_reaches_the_admin_pages_its_role_grants(client, admin):
    client.force_login(admin)
    for url in ("/admin/", "/admin/cases/case/", "/admin/auth/user/", "/admin/axes/accessattempt/"):
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/segmentation/segmentationrun/add/").status_code == 403  # no role grants it
    assert b'href="/admin/"' in client.get("/").content


def test_signing_in_and_out(client, owner):
    response = client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_the_admin_site_shows_the_record_but_does_not_write_it(client, admin, recorded):
    client.force_login(admin)
    link = recorded.case_diagnoses.get()
    assert client.get(f"/admin/cases/case/{recorded.pk}/change/").status_code == 200
    assert client.get("/admin/cases/case/add/").status_code == 403
    assert client.get("/admin/cases/casediagnosis/add/").status_code == 403
    client.post(f"/admin/cases/casediagnosis/{link.pk}/delete/", {"post": "yes"})
    assert recorded.case_diagnoses.filter(pk=link.pk).exists()  # removing a diagnosis is audited, in the app


def test_an_admin_gives_roles_but_only_a_superuser_makes_a_superuser(client, admin, viewer):
    client.force_login(admin)
    page = client.get(f"/admin/auth/user/{viewer.pk}/change/").content.decode()
    assert 'name="groups"' in page and 'name="is_staff"' in page
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    assert client.get(f"/admin/auth/user/{root.pk}/password/").status_code == 403
    client.post(
        f"/admin/auth/user/{root.pk}/password/", {"password1": "taken-0ver!", "password2": "taken-0ver!"}
    )
    root.refresh_from_db()
    assert not root.check_password("taken-0ver!")
    client.force_login(root)
    assert 'name="is_superuser"' in client.get(f"/admin/auth/user/{viewer.pk}/change/").content.decode()

"""The admin site shows studies and does not edit them (their patient and pseudonym come from the files)."""

from __future__ import annotations

import pytest

from cases.models import Study
from cases.services import case_create
from tests.cases.builders import dicom_bytes

pytestmark = pytest.mark.django_db


def test_an_admin_sees_a_study_and_cannot_change_or_delete_it(client, admin_user):
    case = case_create(image_file=dicom_bytes(), filename="s.dcm")
    client.force_login(admin_user)
    listing = client.get("/admin/cases/study/")
    assert listing.status_code == 200 and case.study.uid_pseudonym in listing.content.decode()
    page = client.get(f"/admin/cases/study/{case.study_id}/change/")
    assert page.status_code == 200 and 'name="uid_pseudonym"' not in page.content.decode()
    client.post(f"/admin/cases/study/{case.study_id}/change/", {"modality": "CT", "uid_pseudonym": "st-0"})
    assert Study.objects.filter(
        pk=case.study_id, modality="MR", uid_pseudonym=case.study.uid_pseudonym
    ).exists()
    assert client.get(f"/admin/cases/study/{case.study_id}/delete/").status_code == 403
    assert client.get(f"/admin/cases/case/{case.pk}/change/").status_code == 200  # study as a raw id

"""The typed patient identifier (issue #32, item 3): a pseudonymous code passes; what looks like a name, a
date or a hospital number is refused with a 400 problem that says why and what to type instead. The
upload page posts its field to this very API, so its uploads get the same answer."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from cases.models import Case, Patient
from cases.validators import patient_identifier_problem
from tests.cases.builders import png_bytes, synthetic_slice

ACCEPTED = [
    "P00001",
    "AUDIT-1",
    "BT-001",
    "BT-0042",
    "NEW-PATIENT",
    "MR040240",
    "100360",  # Figshare's pseudonymous numeric PIDs (6 digits)
    "BT-2024-0042",  # a year and a sequence number is not a date
    "GLIOMA-TRIAL-7",
    "Smith",  # one word cannot be told from a code
    "pt-0123456789abcdef",  # the site's own pseudonyms, even when their hex digits run long
    "pt-1234567890123456",
    "anon-0123456789ab",
]
REFUSED = [
    ("Jane Doe", "person's name"),
    ("Doe, Jane", "person's name"),
    ("Jean-Luc Picard", "person's name"),
    ("José Álvarez", "person's name"),
    ("Doe^Jane", "separates the parts of a name"),
    ("DOE^", "separates the parts of a name"),
    ("1961-02-03", "a date"),
    ("03/02/1961", "a date"),
    ("3.2.61", "a date"),
    ("BT-1961-02-03", "a date"),
    ("3 Feb 1961", "a date"),
    ("Feb 3, 1961", "a date"),
    ("03-feb-61", "a date"),
    ("19610203", "long number"),
    ("HOSP-PID-9876543", "long number"),
    ("MRN 1234567", "long number"),
    ("943 476 5919", "NHS"),
    ("123-45-6789", "long number"),
]


def _upload(api, patient: str):
    image = png_bytes(synthetic_slice()[0])
    return api.post(
        "/api/cases/",
        {"image": SimpleUploadedFile("slice.png", image, content_type="image/png"), "patient": patient},
        format="multipart",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("identifier", ACCEPTED)
def test_a_pseudonymous_code_is_accepted(api, identifier):
    response = _upload(api, identifier)
    assert response.status_code == 201, response.content
    assert Case.objects.get(pk=response.json()["id"]).patient.identifier == identifier


@pytest.mark.django_db
@pytest.mark.parametrize(("identifier", "why"), REFUSED)
def test_an_identifying_value_is_refused_with_why_and_what_to_type(api, identifier, why):
    response = _upload(api, identifier)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    [message] = problem["errors"]["patient"]
    assert why in message and "BT-0042" in message and "pseudonymous code" in message
    # What the upload page shows for the file: the problem's detail, which names the field.
    assert problem["detail"] == f"patient: {message}"
    assert identifier not in message  # the refusal does not echo what it refuses
    assert Case.objects.count() == 0 and Patient.objects.count() == 0


@pytest.mark.parametrize(("identifier", "why"), REFUSED)
def test_the_check_itself_names_the_reason(identifier, why):
    assert why in (patient_identifier_problem(identifier) or "")


@pytest.mark.parametrize("identifier", [*ACCEPTED, "", "   "])
def test_the_check_itself_passes_codes(identifier):
    assert patient_identifier_problem(identifier) is None


@pytest.mark.django_db
def test_the_upload_page_posts_its_field_to_the_checked_api_and_says_what_to_type(clinician, client):
    client.force_login(clinician)
    page = client.get(reverse("upload")).content.decode()
    assert f'data-api="{reverse("api:case-list")}"' in page
    assert 'id="patient" name="patient"' in page and 'aria-describedby="patient-hint"' in page
    assert "never a name, a birth date or a" in page

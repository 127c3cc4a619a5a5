"""DICOMweb STOW-RS (issue #32, item 2): ``POST /dicomweb/studies`` with dicomweb-client as the sender.

The instances of a study become cases of one study of one patient, de-identified like uploads; the
response is PS3.18's (ReferencedSOPSequence / FailedSOPSequence; 200, 202 or 409); and nothing that
names the patient (ID, name, birth date), nor the file's name, nor the sender's UIDs, is kept anywhere:
database, media, pages or log (the grep test, with the upload form as well).
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from cases.models import Case, Patient, Study
from cases.pseudonyms import patient_pseudonym, study_pseudonym
from clinic.api import dicomweb
from clinic.api.dicomweb import (
    CANNOT_UNDERSTAND,
    COERCION_OF_DATA_ELEMENTS,
    DUPLICATE_SOP_INSTANCE,
    multipart_related_parts,
)
from tests.cases.builders import dicom_bytes
from tests.cases.test_pseudonyms import FILENAME, SECRETS, _database_dump, _needles, assert_found_nowhere
from tests.conftest import UserFactory, with_roles
from tests.media import stored_bytes
from tumorsite import queue

KEY = "d" * 40
STUDY_UID = "1.2.826.0.1.3680043.8.498.20240102.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.20240102.1.7"
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary="b0undary"'


def _instance(number: int, *, study_uid: str = STUDY_UID, patient: dict | None = None) -> Dataset:
    """Slice ``number`` of an axial MR series, with its patient's identifiers in the header."""
    pixels = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 5 + number).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    for keyword, value in (patient or SECRETS).items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, SERIES_UID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{SERIES_UID}.{number}"
    ds.InstanceNumber, ds.StudyDate = number, "20240102"
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, 2.5 * number]
    return ds


def _part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _multipart(*files: bytes, boundary: bytes = b"b0undary") -> bytes:
    body = b"".join(b"\r\n--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + f for f in files)
    return body + b"\r\n--" + boundary + b"--\r\n"


@pytest.fixture
def queued(monkeypatch) -> list[str]:
    """The tasks the stores queue, recorded and not run (no model runs in these tests)."""
    names: list[str] = []
    monkeypatch.setattr(queue, "enqueue", lambda task, *args, **kwargs: names.append(task.name))
    return names


@pytest.fixture
def sender(live_server, settings, queued):
    """dicomweb-client pointed at the live server with a clinician's token, as a PACS would be."""
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    clinician = with_roles(UserFactory(username="pacs"), "clinician")
    token = Token.objects.create(user=clinician)
    return DICOMwebClient(url=live_server.url + "/dicomweb", headers={"Authorization": f"Token {token.key}"})


# === Through dicomweb-client ===


@pytest.mark.django_db(transaction=True)
def test_a_study_sent_by_dicomweb_client_becomes_cases_of_one_study_of_one_patient(sender, queued):
    answer = sender.store_instances([_instance(1), _instance(2)])
    referenced = answer.ReferencedSOPSequence
    assert [item.ReferencedSOPInstanceUID for item in referenced] == [f"{SERIES_UID}.1", f"{SERIES_UID}.2"]
    assert {item.WarningReason for item in referenced} == {COERCION_OF_DATA_ELEMENTS}  # de-identified
    assert "FailedSOPSequence" not in answer
    study = Study.objects.get()
    assert study.uid_pseudonym == study_pseudonym(STUDY_UID, key=KEY)
    assert study.patient.identifier == patient_pseudonym(
        SECRETS["IssuerOfPatientID"], SECRETS["PatientID"], key=KEY
    )
    cases = list(study.cases.order_by("slice_position"))
    assert [(c.slice_number, c.scan.format, c.created_by.username) for c in cases] == [
        (1, "dicom", "pacs"),
        (2, "dicom", "pacs"),
    ]
    assert queued  # each case's segmentation was queued, as for an upload

    # The same patient sent again, in a later study: one patient, two studies.
    sender.store_instances([_instance(1, study_uid=STUDY_UID + ".2")])
    assert Patient.objects.count() == 1 and Study.objects.count() == 2 and Case.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_instances_already_stored_are_failed_as_duplicates_with_409(sender):
    sender.store_instances([_instance(1)])
    with pytest.raises(requests.HTTPError) as error:
        sender.store_instances([_instance(1)])
    response = error.value.response
    assert response.status_code == 409
    failed = Dataset.from_json(response.json()).FailedSOPSequence
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in failed] == [
        (f"{SERIES_UID}.1", DUPLICATE_SOP_INSTANCE)
    ]
    assert "already uploaded as case" in response.headers["Warning"]
    assert Case.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_with_one_bad_instance_stores_the_others_and_answers_202(sender):
    colour = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))
    answer = sender.store_instances([_instance(1), colour])  # a 202 is not an error for the client
    assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [f"{SERIES_UID}.1"]
    (failed,) = answer.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
        colour.SOPInstanceUID,
        CANNOT_UNDERSTAND,
    )
    assert Case.objects.count() == 1


@pytest.mark.django_db
def test_an_unexpected_error_fails_that_instance_only_and_is_logged(queued, settings, monkeypatch, caplog):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    real = dicomweb.upload_record
    calls = []

    def second_breaks(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(**kwargs)

    monkeypatch.setattr(dicomweb, "upload_record", second_breaks)
    api = APIClient()
    api.force_authenticate(with_roles(UserFactory(username="c"), "clinician"))
    body = _multipart(_part10(_instance(1)), _part10(_instance(2)))
    response = api.generic("POST", "/dicomweb/studies", body, content_type=CONTENT_TYPE)
    assert response.status_code == 202
    answer = Dataset.from_json(response.json())
    assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [f"{SERIES_UID}.1"]
    assert [i.FailureReason for i in answer.FailedSOPSequence] == [0x0110]
    assert "STOW-RS: storing an instance failed" in caplog.text and Case.objects.count() == 1


# === The request itself ===


@pytest.mark.django_db
def test_what_is_not_multipart_related_dicom_is_refused_with_415_saying_what_to_send(queued):
    api = APIClient()
    api.force_authenticate(with_roles(UserFactory(username="c"), "clinician"))
    for content_type in ("application/dicom", 'multipart/related; type="application/dicom+json"; boundary=x'):
        response = api.generic("POST", "/dicomweb/studies", b"x", content_type=content_type)
        assert response.status_code == 415, content_type
        assert 'multipart/related; type="application/dicom"' in response.json()["detail"]
    assert Case.objects.count() == 0


@pytest.mark.django_db
def test_a_chunked_body_is_read_when_the_server_decodes_it_else_411(queued, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    api = APIClient()
    api.force_authenticate(with_roles(UserFactory(username="c"), "clinician"))
    body = _multipart(_part10(_instance(1)))
    chunked = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(body)}
    refused = api.generic("POST", "/dicomweb/studies", body, content_type=CONTENT_TYPE, **chunked)
    assert refused.status_code == 411 and "chunked" in refused.json()["detail"]
    chunked["wsgi.input"] = io.BytesIO(body)
    stored = api.generic(
        "POST",
        "/dicomweb/studies",
        body,
        content_type=CONTENT_TYPE,
        **chunked,
        **{"wsgi.input_terminated": True},
    )
    assert stored.status_code == 200, stored.content
    assert stored["Content-Type"] == "application/dicom+json" and Case.objects.count() == 1


@pytest.mark.django_db
def test_a_request_over_the_size_limit_is_refused_with_413(queued, settings):
    settings.TUMORSITE_DICOMWEB_MAX_MB = 0
    api = APIClient()
    api.force_authenticate(with_roles(UserFactory(username="c"), "clinician"))
    response = api.generic("POST", "/dicomweb/studies", _multipart(b"x"), content_type=CONTENT_TYPE)
    assert response.status_code == 413 and "several requests" in response.json()["detail"]


def test_the_parts_are_split_on_whole_delimiter_lines_only():
    inside = b"DICM...--b0undary in the middle of a file\r\n--b0undaryX"
    assert multipart_related_parts(_multipart(b"first", inside), b"b0undary") == [b"first", inside]
    no_headers = b"\r\n--b\r\n\r\nbare\r\n--b--"
    assert multipart_related_parts(no_headers, b"b") == [b"bare"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"\r\n--b\r\nContent-Type: application/dicom\r\n\r\ncut", "no closing boundary"),
        (b"\r\n--b\r\nContent-Type: application/dicom\r\n--b--", "no blank line after its headers"),
        (b"\r\n--b\r\nContent-Type: image/png\r\n\r\nx\r\n--b--", "must be a DICOM file"),
    ],
)
def test_a_malformed_body_is_refused_with_its_reason(body, words):
    with pytest.raises(Exception, match=words):
        multipart_related_parts(body, b"b")


# === The grep test ===


@pytest.mark.django_db(transaction=True)
def test_no_identifier_sent_by_stow_rs_or_the_upload_form_is_kept_anywhere(sender, client, caplog):
    caplog.set_level(logging.DEBUG)
    sender.store_instances([_instance(1), _instance(2)])
    uploader = with_roles(UserFactory(username="uploader"), "clinician", "reviewer")
    api = APIClient()
    api.force_authenticate(uploader)
    upload = api.post(
        "/api/cases/",
        {"image": SimpleUploadedFile(FILENAME, _part10(_instance(3)), content_type="application/dicom")},
        format="multipart",
    )
    assert upload.status_code == 201, upload.content
    cases = list(Case.objects.select_related("patient", "study").order_by("slice_number"))
    assert len(cases) == 3 and len({(c.patient_id, c.study_id) for c in cases}) == 1  # one study, joined

    client.force_login(uploader)
    shown = {"API list": json.dumps(api.get("/api/cases/").json())}
    pages = [
        ("case list", reverse("case-list")),
        ("patient page", reverse("patient-detail", args=[cases[0].patient_id])),
    ]
    for case in cases:
        pages += [
            (f"case {case.pk}", reverse("case-detail", args=[case.pk])),
            (f"report {case.pk}", reverse("case-report", args=[case.pk])),
        ]
        shown[f"API case {case.pk}"] = json.dumps(api.get(f"/api/cases/{case.pk}/").json())
    for name, url in pages:
        response = client.get(url)
        assert response.status_code == 200, name
        shown[name] = response.content.decode()
    assert cases[0].patient.identifier in shown["patient page"]

    database = _database_dump()
    assert cases[0].patient.identifier in database and cases[0].study.uid_pseudonym in database
    media = stored_bytes()
    assert len(media) >= 3
    # The sender's UIDs are replaced too (PS3.15 E.1-1, action U): they are not stored either.
    needles = [*_needles(), STUDY_UID, SERIES_UID, f"{SERIES_UID}.1"]
    assert_found_nowhere(needles, database=database, media=media, shown=shown, log=caplog.text)

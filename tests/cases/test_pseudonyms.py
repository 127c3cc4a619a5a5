"""Patients that link without identifiers (issue #32, item 3): a DICOM upload's patient is a keyed
pseudonym of its issuer and PatientID; neither the ID, the name, the birth date nor the file's name is
kept anywhere: database, media, pages or API (the grep test)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.apps import apps
from django.core import serializers
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from cases.models import Case, Patient
from cases.pseudonyms import PSEUDONYM_PATTERN, patient_pseudonym
from cases.services import case_create
from tests.cases.builders import dicom_bytes, png_bytes, synthetic_slice
from tests.media import stored_bytes
from tests.test_settings_modes import _run

KEY = "k" * 40


def _dicom(seed: int = 0, **header) -> bytes:
    """A DICOM slice whose pixels differ with ``seed`` (so it is another file), with ``header`` set."""
    pixels = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 5 + seed).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    for keyword, value in header.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# === The pseudonym ===


def test_a_pseudonym_is_short_readable_and_the_same_for_the_same_patient():
    code = patient_pseudonym("HOSP-A", "MRN-0042", key=KEY)
    assert PSEUDONYM_PATTERN.match(code) and len(code) == 19
    assert patient_pseudonym("HOSP-A", " MRN-0042 ", key=KEY) == code  # DICOM's padding does not count
    assert "0042" not in code


@pytest.mark.parametrize(
    ("issuer", "patient_id", "key"),
    [
        ("HOSP-B", "MRN-0042", KEY),  # another hospital's patient with the same number
        ("", "MRN-0042", KEY),
        ("HOSP-A", "MRN-0043", KEY),
        ("HOSP-A", "mrn-0042", KEY),  # hospitals' IDs are case-sensitive
        ("HOSP-AM", "RN-0042", KEY),  # the parts are kept apart, not concatenated
        ("HOSP-A", "MRN-0042", "another key, just as long as the first one"),
    ],
)
def test_another_issuer_id_or_key_gives_another_pseudonym(issuer, patient_id, key):
    assert patient_pseudonym(issuer, patient_id, key=key) != patient_pseudonym("HOSP-A", "MRN-0042", key=KEY)


def test_no_patient_id_has_no_pseudonym():
    with pytest.raises(ValueError, match="needs a patient ID"):
        patient_pseudonym("HOSP-A", "  ", key=KEY)


# === Uploads join their patient ===


@pytest.mark.django_db
def test_two_files_of_one_dicom_patient_are_one_patient_named_by_the_pseudonym(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    first = case_create(image_file=_dicom(1, IssuerOfPatientID="HOSP-A"), filename="a.dcm", user=owner)
    second = case_create(image_file=_dicom(2, IssuerOfPatientID="HOSP-A"), filename="b.dcm", user=owner)
    assert first.scan.sha256 != second.scan.sha256  # two different files
    assert first.patient == second.patient and Patient.objects.count() == 1
    assert first.patient.identifier == patient_pseudonym("HOSP-A", "MRN-0042", key=KEY)


@pytest.mark.django_db
def test_the_same_id_from_another_issuer_is_another_patient(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    ours = case_create(image_file=_dicom(1, IssuerOfPatientID="HOSP-A"), filename="a.dcm", user=owner)
    theirs = case_create(image_file=_dicom(2, IssuerOfPatientID="HOSP-B"), filename="b.dcm", user=owner)
    no_issuer = case_create(image_file=_dicom(3, IssuerOfPatientID=None), filename="c.dcm", user=owner)
    assert len({ours.patient_id, theirs.patient_id, no_issuer.patient_id}) == 3
    assert no_issuer.patient.identifier == patient_pseudonym("", "MRN-0042", key=KEY)


@pytest.mark.django_db
def test_another_key_splits_the_patient(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    before = case_create(image_file=_dicom(1), filename="a.dcm", user=owner)
    settings.TUMORSITE_PSEUDONYM_KEY = "a rotated key, as long and as random as the first"
    after = case_create(image_file=_dicom(2), filename="b.dcm", user=owner)
    assert before.patient != after.patient
    assert PSEUDONYM_PATTERN.match(after.patient.identifier)


@pytest.mark.django_db
def test_a_typed_identifier_wins_and_a_dicom_without_patient_id_gets_an_anonymous_patient(owner):
    typed = case_create(image_file=_dicom(1), filename="a.dcm", user=owner, patient_identifier="BT-0042")
    assert typed.patient.identifier == "BT-0042"
    bare = case_create(image_file=_dicom(2, PatientID=None), filename="b.dcm", user=owner)
    assert bare.patient.identifier.startswith("anon-")


@pytest.mark.django_db
def test_a_placeholder_patient_id_links_nothing(owner):
    """Files an anonymising tool marked "ANONYMOUS" are strangers to each other, not one patient."""
    cases = [
        case_create(image_file=_dicom(seed, PatientID=placeholder), filename="a.dcm", user=owner)
        for seed, placeholder in enumerate(["ANONYMOUS", "Anonymous", "0", "  unknown "])
    ]
    assert len({case.patient_id for case in cases}) == 4
    assert all(case.patient.identifier.startswith("anon-") for case in cases)


@pytest.mark.django_db
def test_a_dicom_upload_is_shown_by_a_neutral_name_and_a_png_keeps_its_own(owner):
    dicom = case_create(image_file=_dicom(1), filename="Doe^Jane_MRN-0042_19700101.dcm", user=owner)
    assert dicom.scan.original_filename == f"dicom-{dicom.scan.sha256[:12]}.dcm"
    png = case_create(image_file=png_bytes(synthetic_slice()[0]), filename="slice 7.png", user=owner)
    assert png.scan.original_filename == "slice 7.png"


# === The grep test ===

SECRETS = {
    "PatientID": "ZQXPID4711WQ",
    "IssuerOfPatientID": "ZQXISSUERWQ",
    "PatientName": "Zqxwertyson^Wilhelmina",
    "PatientBirthDate": "19610203",
}
FILENAME = "Zqxwertyson^Wilhelmina_ZQXPID4711WQ_19610203.dcm"


def _needles() -> list[str]:
    name = SECRETS["PatientName"]
    return [
        SECRETS["PatientID"],
        SECRETS["IssuerOfPatientID"],
        *name.split("^"),
        name.replace("^", " "),
        SECRETS["PatientBirthDate"],
        "1961-02-03",
        FILENAME,
        Path(FILENAME).stem,
    ]


def _database_dump() -> str:
    """Every row of every model, as JSON text."""
    chunks = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        chunks.append(serializers.serialize("json", model._default_manager.all()))
    return "\n".join(chunks)


@pytest.mark.django_db
def test_no_patient_id_name_birth_date_or_file_name_is_kept_anywhere(owner, client, settings, caplog):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    caplog.set_level(logging.DEBUG)
    api = APIClient()
    api.force_authenticate(owner)
    ids = []
    for seed in (1, 2):  # the same patient sent twice, as two different files
        response = api.post(
            "/api/cases/",
            {
                "image": SimpleUploadedFile(
                    FILENAME, _dicom(seed, **SECRETS), content_type="application/dicom"
                )
            },
            format="multipart",
        )
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    cases = list(Case.objects.filter(pk__in=ids).select_related("patient"))
    assert len({case.patient_id for case in cases}) == 1
    patient = cases[0].patient
    assert patient.identifier == patient_pseudonym(
        SECRETS["IssuerOfPatientID"], SECRETS["PatientID"], key=KEY
    )

    client.force_login(owner)
    shown = {"API detail": json.dumps(api.get(f"/api/cases/{ids[0]}/").json())}
    shown["API list"] = json.dumps(api.get("/api/cases/").json())
    for name, url in [
        ("case page", reverse("case-detail", args=[ids[0]])),
        ("report", reverse("case-report", args=[ids[0]])),
        ("case list", reverse("case-list")),
        ("patient list", reverse("patient-list")),
        ("patient page", reverse("patient-detail", args=[patient.pk])),
    ]:
        response = client.get(url)
        assert response.status_code == 200, name
        shown[name] = response.content.decode()
    assert patient.identifier in shown["case page"]  # the pages do show the patient, by the pseudonym

    database = _database_dump()
    assert patient.identifier in database and "case.uploaded" in database  # the dump holds the rows
    media = stored_bytes()
    assert len(media) >= 2  # the two de-identified copies
    assert_found_nowhere(_needles(), database=database, media=media, shown=shown, log=caplog.text)


def assert_found_nowhere(
    needles: list[str], *, database: str, media: dict[str, bytes], shown: dict[str, str], log: str
) -> None:
    """None of ``needles`` (case ignored) in the database dump, a media file, a page or the log."""
    for needle in needles:
        assert needle.lower() not in database.lower(), f"{needle!r} is in the database"
        for name, data in media.items():
            assert needle.encode().lower() not in data.lower(), f"{needle!r} is in {name}"
        for name, text in shown.items():
            assert needle.lower() not in text.lower(), f"{needle!r} is on the {name}"
        assert needle.lower() not in log.lower(), f"{needle!r} is in the log"


# === The key in each mode ===

KEY_PROBE = """
import django
from django.conf import settings
django.setup()
print(settings.TUMORSITE_PSEUDONYM_KEY)
"""


def _key_in(tmp_path, settings_module: str, **env):
    """The process's TUMORSITE_PSEUDONYM_KEY, or the failed start-up, under ``env``."""
    return _run(["-c", KEY_PROBE], settings_module, tmp_path, **env)


@pytest.mark.parametrize(("value", "words"), [("", "not set"), ("short", "shorter than 32 characters")])
def test_production_refuses_to_start_without_a_long_pseudonym_key(tmp_path, value, words):
    result = _key_in(
        tmp_path, "tumorsite.settings.production", SECRET_KEY="s" * 50, TUMORSITE_PSEUDONYM_KEY=value
    )
    assert result.returncode != 0
    assert f"TUMORSITE_PSEUDONYM_KEY is {words}" in result.stderr


def test_production_uses_the_key_it_is_given_and_embedded_mode_derives_one_from_secret_key(tmp_path):
    given = _key_in(
        tmp_path, "tumorsite.settings.production", SECRET_KEY="s" * 50, TUMORSITE_PSEUDONYM_KEY=KEY
    )
    assert given.returncode == 0, given.stderr
    assert given.stdout.strip().splitlines()[-1] == KEY
    derived = {
        secret: _key_in(tmp_path, "tumorsite.settings.base", SECRET_KEY=secret, TUMORSITE_PSEUDONYM_KEY="")
        for secret in ("first secret key " * 3, "second secret key " * 3)
    }
    keys = {result.stdout.strip().splitlines()[-1] for result in derived.values()}
    assert len(keys) == 2 and not keys & set(derived)  # one per SECRET_KEY, neither the SECRET_KEY itself

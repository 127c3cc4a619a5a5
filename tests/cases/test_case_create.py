"""case_create: what a clinician's upload turns into, and what a bad one leaves behind (nothing)."""

import hashlib
import io
import re
import struct

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from cases.models import Case, MaskSource, Patient, Scan, TypeSource
from cases.readers import ImageReadError
from cases.selectors import case_ground_truth_mask, scan_read
from cases.services import DuplicateUpload, case_create, case_ground_truth_set
from tests.cases.builders import PHI, dicom_bytes, png_bytes, synthetic_slice, write_figshare_mat
from tests.media import stored_names

pytestmark = pytest.mark.django_db


def test_a_png_upload_becomes_a_case_with_its_scan_stored(owner):
    pixels, _ = synthetic_slice(48, 56)
    data = png_bytes(pixels)
    case = case_create(image_file=SimpleUploadedFile("slice.png", data), filename="slice.png", user=owner)
    case.refresh_from_db()
    scan = case.scan
    assert (scan.format, scan.width, scan.height, scan.original_filename) == ("png", 56, 48, "slice.png")
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert scan.uploaded_by == owner and case.created_by == owner
    with scan.file.open("rb") as f:
        assert f.read() == data
    assert case.patient.identifier.startswith("anon-")
    assert case.tumour_type is None and case.tumour_type_source is None
    assert not case.in_case_base


def test_a_given_patient_and_tumour_type_are_recorded_as_the_clinicians(owner):
    first = case_create(
        image_file=png_bytes(synthetic_slice()[0]),
        filename="a.png",
        user=owner,
        patient_identifier="P-17",
        tumour_type="glioma",
    )
    second = case_create(
        image_file=png_bytes(synthetic_slice(centre=(30, 30))[0]),
        filename="b.png",
        user=owner,
        patient_identifier="P-17",
    )
    assert first.patient == second.patient and Patient.objects.count() == 1
    assert (first.tumour_type, first.tumour_type_source) == ("glioma", TypeSource.CLINICIAN)


def test_an_unknown_tumour_type_is_refused_and_stores_nothing(owner, settings):
    with pytest.raises(ValueError, match="Unknown tumour type"):
        case_create(
            image_file=png_bytes(synthetic_slice()[0]), filename="a.png", user=owner, tumour_type="lymphoma"
        )
    assert Case.objects.count() == 0 and stored_names() == []


def test_a_dicom_upload_is_stored_deidentified(owner):
    case = case_create(image_file=dicom_bytes(), filename="IM0001.dcm", user=owner)
    with case.scan.file.open("rb") as f:
        stored = f.read()
    for value in PHI.values():
        assert value.encode() not in stored
    assert pydicom.dcmread(io.BytesIO(stored)).PatientIdentityRemoved == "YES"
    assert case.scan.sha256 == hashlib.sha256(stored).hexdigest()
    assert (case.scan.pixel_spacing_mm, case.scan.pixel_spacing_col_mm) == (0.5, 0.75)
    assert PHI["PatientID"] not in case.patient.identifier
    assert scan_read(scan=case.scan).pixels.shape == (6, 8)


def test_a_figshare_mat_upload_brings_its_mask_and_label(owner, tmp_path):
    image = np.zeros((20, 30), np.int16)
    image[2:6, 20:27] = 1200  # 16-bit values: stored as a 16-bit PNG
    path = write_figshare_mat(tmp_path / "7.mat", image, image > 0, label=1, pid="MR777")
    case = case_create(image_file=path.read_bytes(), filename="7.mat", user=owner)
    assert case.scan.format == "mat" and case.scan.file.name.endswith(".png")
    assert (case.tumour_type, case.tumour_type_source) == ("meningioma", TypeSource.IMPORTED)
    assert case.mask_source == MaskSource.IMPORTED and case.in_case_base
    assert case.patient.identifier == "MR777"
    with case.scan.file.open("rb") as f:
        stored = np.asarray(Image.open(f))
    np.testing.assert_array_equal(stored, image)
    np.testing.assert_array_equal(case_ground_truth_mask(case=case), image > 0)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"not an image at all" * 4, "not an image"),
        (dicom_bytes(frames=3), "holds 3 frames; the limit is 2 frames"),
    ],
    ids=["empty", "text", "too many frames"],
)
def test_a_bad_upload_raises_and_creates_no_record_and_no_file(owner, settings, data, words):
    settings.TUMORSITE_MAX_FRAMES = 2
    with pytest.raises(ImageReadError, match=words):
        case_create(image_file=data, filename="upload.dcm" if b"DICM" in data else "upload.png", user=owner)
    assert (Case.objects.count(), Scan.objects.count(), Patient.objects.count()) == (0, 0, 0)
    assert stored_names() == []


def test_an_upload_over_the_size_limit_is_refused_without_reading_it_all(owner, settings):
    settings.TUMORSITE_MAX_UPLOAD_MB = 1
    upload = SimpleUploadedFile("big.png", png_bytes(synthetic_slice()[0]) + b"\0" * (2 * 1024 * 1024))
    with pytest.raises(ImageReadError, match="too large"):
        case_create(image_file=upload, filename="big.png", user=owner)
    assert Case.objects.count() == 0


def test_a_database_failure_leaves_no_orphan_file(owner, settings, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Case, "save", broken_save)
    with pytest.raises(RuntimeError):
        case_create(image_file=png_bytes(synthetic_slice()[0]), filename="a.png", user=owner)
    assert Scan.objects.count() == 0 and stored_names() == []


def test_a_corrected_outline_replaces_the_ground_truth(owner, colleague, django_capture_on_commit_callbacks):
    image, lesion = synthetic_slice()
    case = case_create(image_file=png_bytes(image), filename="a.png", user=owner)
    with django_capture_on_commit_callbacks(execute=True):
        case_ground_truth_set(case=case, mask=lesion, user=colleague)
    case.refresh_from_db()
    assert (
        case.mask_source == MaskSource.CORRECTED and case.mask_updated_by == colleague and case.in_case_base
    )
    np.testing.assert_array_equal(case_ground_truth_mask(case=case), lesion)
    with pytest.raises(ValueError, match="mask is"):
        case_ground_truth_set(case=case, mask=lesion[:10], user=colleague)


def test_the_same_file_again_names_the_existing_case_and_stores_nothing(owner, colleague, settings):
    data = png_bytes(synthetic_slice()[0])
    first = case_create(image_file=data, filename="a.png", user=owner)
    files = stored_names()
    with pytest.raises(DuplicateUpload, match=f"already uploaded as case {first.pk}") as refused:
        case_create(image_file=data, filename="renamed.png", user=colleague, patient_identifier="P-2")
    assert refused.value.case == first
    assert (Case.objects.count(), Scan.objects.count(), Patient.objects.count()) == (1, 1, 1)
    assert stored_names() == files


def test_the_same_file_is_recorded_again_when_the_uploader_insists(owner):
    data = png_bytes(synthetic_slice()[0])
    first = case_create(image_file=data, filename="a.png", user=owner)
    second = case_create(image_file=data, filename="a.png", user=owner, force=True)
    assert second.pk != first.pk and second.scan.sha256 == first.scan.sha256
    assert second.scan.file.name != first.scan.file.name


def test_a_dicom_uploaded_twice_is_a_duplicate_of_its_deidentified_copy(owner):
    data = dicom_bytes()  # the stored copy is de-identified: the key is the digest of that copy
    first = case_create(image_file=data, filename="IM0001.dcm", user=owner)
    with pytest.raises(DuplicateUpload) as refused:
        case_create(image_file=data, filename="IM0001 (copy).dcm", user=owner)
    assert refused.value.case == first


@pytest.mark.parametrize(
    ("filename", "kept"),
    [
        ("a" * 296 + ".png", "a" * 250 + "\u2026.png"),
        ("../../etc/x.png", "x.png"),
        ("C:\\Users\\dr\\scan.png", "scan.png"),
        ("ta\x00il\x07.png", "tail.png"),
        ("IRM cérébrale 脑.png", "IRM cérébrale 脑.png"),
        ("..", "upload"),
        ("", "upload"),
    ],
    ids=[
        "300 characters",
        "path traversal",
        "windows path",
        "control characters",
        "unicode",
        "dots",
        "empty",
    ],
)
def test_any_filename_is_kept_as_a_clean_label_and_never_names_the_stored_file(
    owner, settings, filename, kept
):
    case = case_create(image_file=png_bytes(synthetic_slice()[0]), filename=filename, user=owner)
    case.scan.refresh_from_db()
    assert case.scan.original_filename == kept
    assert len(kept) <= Scan._meta.get_field("original_filename").max_length
    assert re.fullmatch(r"scans/\d{4}/\d{2}/[0-9a-f]{32}\.png", case.scan.file.name)
    assert [name.split("/")[0] for name in stored_names()] == ["scans"]


def test_a_tiny_png_declaring_a_huge_image_is_refused_before_decoding(owner, settings):
    # 8000x8000 in its header, a few bytes of data: the header alone decides.
    header = png_bytes(np.zeros((8, 8), np.uint8))
    bomb = header[:16] + struct.pack(">II", 8000, 8000) + header[24:]
    with pytest.raises(ImageReadError, match=r"8000x8000 pixels\); the limit is 16,777,216 pixels"):
        case_create(image_file=bomb, filename="bomb.png", user=owner)
    assert Case.objects.count() == 0 and stored_names() == []

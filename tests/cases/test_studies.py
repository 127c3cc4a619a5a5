"""Studies (issue #32, items 1 and 3): a multi-frame DICOM file is one study of a case per frame; the
files of one study (the same StudyInstanceUID) join it whether sent together or one after another,
through the UID's keyed pseudonym; every other upload is a study of its own."""

from __future__ import annotations

import datetime
import importlib
import io

import numpy as np
import pydicom
import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedMRImageStorage
from rest_framework.test import APIClient

from cases.models import Case, Study
from cases.pseudonyms import patient_pseudonym, series_pseudonym, study_pseudonym
from cases.readers import ImageReadError, read_images
from cases.selectors import scan_read
from cases.services import StudyOfAnotherPatient, case_create
from segmentation.models import SegmentationRun
from segmentation.testing import make_case
from tests.cases.builders import dicom_bytes, png_bytes, synthetic_slice

pytestmark = pytest.mark.django_db

KEY = "s" * 40
STUDY_UID = "1.2.826.0.1.3680043.8.498.4711"


def _saved(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _slice_file(
    *, instance: int, z: float, study_uid: str = STUDY_UID, series_uid: str = "1.2.3.9", **header
):
    """One slice of an axial series: its own pixels, position ``z`` mm and InstanceNumber ``instance``."""
    pixels = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 5 + instance).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-10, -20, z]
    ds.StudyDate = "20240102"
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    return _saved(ds)


def _multi_frame(frames: int = 4) -> bytes:
    """A legacy multi-frame MR file: frame i's pixels are i * 100 + a ramp."""
    ramp = np.arange(48, dtype=np.uint16).reshape(6, 8)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(frames=frames)))
    ds.PixelData = np.stack([ramp + 100 * i for i in range(frames)]).astype(np.uint16).tobytes()
    ds.StudyInstanceUID = STUDY_UID
    ds.StudyDate = "20230517"
    return _saved(ds)


def _enhanced(frames: int = 3) -> bytes:
    """An Enhanced MR file: spacing and rescale in the shared functional groups, each frame's position
    (2.5 mm apart, in descending order) in its own."""
    ds = pydicom.dcmread(io.BytesIO(_multi_frame(frames)))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    for keyword in ("PixelSpacing", "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    measures, transform, orientation = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.8, 0.9], 2.5
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -5, "US"
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [transform]
    shared.PlaneOrientationSequence = [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for i in range(frames):
        position, item = Dataset(), Dataset()
        position.ImagePositionPatient = [0, 0, 10.0 - 2.5 * i]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    return _saved(ds)


# === Multi-frame ===


def test_a_multi_frame_file_is_read_as_one_slice_per_frame_each_stored_on_its_own():
    data = _multi_frame(4)
    images = read_images(data, "series.dcm")
    ramp = np.arange(48).reshape(6, 8)
    assert [image.slice_number for image in images] == [1, 2, 3, 4]
    for i, image in enumerate(images):
        stored = pydicom.dcmread(io.BytesIO(image.stored_bytes))
        assert stored.NumberOfFrames == 1 and stored.InstanceNumber == i + 1
        assert stored.PatientIdentityRemoved == "YES" and not stored.PatientName
        np.testing.assert_array_equal(stored.pixel_array, ramp + 100 * i)
    # each frame has its own instance UID, and the same file read again gives the same bytes
    assert len({pydicom.dcmread(io.BytesIO(i.stored_bytes)).SOPInstanceUID for i in images}) == 4
    assert [i.stored_bytes for i in read_images(data, "again.dcm")] == [i.stored_bytes for i in images]


def test_an_enhanced_file_gives_each_frame_its_position_spacing_and_rescale():
    images = read_images(_enhanced(3), "enhanced.dcm")
    assert [image.slice_position for image in images] == [10.0, 7.5, 5.0]
    assert {(image.pixel_spacing_mm, image.pixel_spacing_col_mm) for image in images} == {(0.8, 0.9)}
    ramp = np.arange(48).reshape(6, 8)
    # VOI: none in the file, so the rescaled values themselves
    np.testing.assert_allclose(images[1].pixels, (ramp + 100) * 2 - 5)
    again = scan_read_bytes(images[2].stored_bytes)  # the stored frame reads back like any slice
    assert (again.slice_position, again.pixel_spacing_mm) == (5.0, 0.8)
    np.testing.assert_allclose(again.pixels, images[2].pixels)


def scan_read_bytes(data: bytes):
    (image,) = read_images(data, "stored.dcm")
    return image


def test_too_many_frames_are_refused_with_the_limit_and_the_setting():
    with pytest.raises(ImageReadError, match=r"holds 4 frames; the limit is 3 frames.*TUMORSITE_MAX_FRAMES"):
        read_images(_multi_frame(4), "long.dcm", max_frames=3)


def test_a_multi_frame_upload_is_one_study_of_a_case_per_frame_each_segmented(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    api = APIClient()
    api.force_authenticate(owner)
    data = _multi_frame(4)
    response = api.post(
        "/api/cases/",
        {"image": SimpleUploadedFile("series.dcm", data, content_type="application/dicom")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    cases = list(Case.objects.filter(pk__in=body["cases"]).order_by("slice_number"))
    assert [case.pk for case in cases] == body["cases"] and body["id"] == body["cases"][0]
    assert len(cases) == 4 and {case.study_id for case in cases} == {body["study"]}
    study = Study.objects.get(pk=body["study"])
    assert study.uid_pseudonym == study_pseudonym(STUDY_UID, key=KEY)
    assert (study.study_date, study.modality) == (datetime.date(2023, 5, 17), "MR")
    assert study.patient.identifier == patient_pseudonym("", "MRN-0042", key=KEY)
    # every frame is queued for segmentation like any case
    runs = [SegmentationRun.objects.filter(case=case).count() for case in cases]
    assert runs[0] >= 1 and runs == [runs[0]] * 4
    ramp = np.arange(48).reshape(6, 8)
    with cases[3].scan.file.open("rb") as f:
        np.testing.assert_array_equal(pydicom.dcmread(f).pixel_array, ramp + 300)
    assert scan_read(scan=cases[3].scan).pixels.shape == (6, 8)
    # the same file again is a duplicate, and stores nothing more
    again = api.post("/api/cases/", {"image": SimpleUploadedFile("x.dcm", data)}, format="multipart")
    assert again.status_code == 409 and Case.objects.count() == 4


# === Files of one study ===


def test_files_of_one_study_sent_one_after_another_join_it_in_slice_order(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    first = case_create(image_file=_slice_file(instance=2, z=5.0), filename="b.dcm", user=owner)
    second = case_create(image_file=_slice_file(instance=1, z=2.5), filename="a.dcm", user=owner)
    other = case_create(
        image_file=_slice_file(instance=1, z=0.0, study_uid="1.2.826.0.1.3680043.8.498.999"),
        filename="c.dcm",
        user=owner,
    )
    assert first.study_id == second.study_id != other.study_id
    assert first.patient_id == second.patient_id == other.patient_id  # one patient, two studies
    assert Study.objects.filter(patient=first.patient).count() == 2
    ordered = list(
        first.study.cases.order_by("slice_position").values_list("pk", "slice_position", "slice_number")
    )
    assert ordered == [(second.pk, 2.5, 1), (first.pk, 5.0, 2)]
    assert first.series_pseudonym == series_pseudonym("1.2.3.9", key=KEY) == second.series_pseudonym


def test_no_study_or_series_uid_is_stored(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    case = case_create(image_file=_slice_file(instance=1, z=0.0), filename="a.dcm", user=owner)
    rows = [case.study.uid_pseudonym, case.series_pseudonym, str(Study.objects.values().get())]
    assert not any(STUDY_UID in row or "1.2.3.9" in row for row in rows)
    with case.scan.file.open("rb") as f:
        stored = pydicom.dcmread(f)
    assert stored.StudyInstanceUID != STUDY_UID  # replaced by de-identification (PS3.15 E.1-1, U)


def test_a_later_file_without_patient_id_joins_the_study_and_its_patient(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    first = case_create(image_file=_slice_file(instance=1, z=0.0), filename="a.dcm", user=owner)
    second = case_create(
        image_file=_slice_file(instance=2, z=2.5, PatientID=""), filename="b.dcm", user=owner
    )
    assert (second.study_id, second.patient_id) == (first.study_id, first.patient_id)


def test_a_file_of_a_study_recorded_for_another_patient_is_refused_with_what_to_do(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    first = case_create(image_file=_slice_file(instance=1, z=0.0), filename="a.dcm", user=owner)
    with pytest.raises(StudyOfAnotherPatient, match=f"leave the patient field empty or type {first.patient}"):
        case_create(
            image_file=_slice_file(instance=2, z=2.5),
            filename="b.dcm",
            user=owner,
            patient_identifier="P-other",
        )
    with pytest.raises(StudyOfAnotherPatient):
        case_create(
            image_file=_slice_file(instance=3, z=5.0, PatientID="MRN-9"), filename="c.dcm", user=owner
        )
    assert Case.objects.count() == 1


def test_an_image_that_is_not_dicom_is_a_study_of_its_own(owner):
    cases = [
        case_create(
            image_file=png_bytes(synthetic_slice(centre=(20 + seed, 30))[0]),
            filename="a.png",
            user=owner,
            patient_identifier="P1",
        )
        for seed in (1, 2)
    ]
    assert cases[0].study_id != cases[1].study_id
    assert [(c.study.uid_pseudonym, c.study.study_date, c.study.patient_id) for c in cases] == [
        (None, None, cases[0].patient_id)
    ] * 2


# === The data migration ===


def test_the_migration_makes_each_existing_case_a_study_of_its_own(owner):
    cases = [make_case(user=owner, size=32) for _ in range(3)]
    Case.objects.update(study=None)
    Study.objects.all().delete()
    migration = importlib.import_module("cases.migrations.0006_studies")
    migration.one_study_per_case(apps, None)
    studies = {case.pk: Case.objects.get(pk=case.pk).study for case in cases}
    assert len({study.pk for study in studies.values()}) == 3
    for case in cases:
        assert (studies[case.pk].patient_id, studies[case.pk].created_at) == (
            case.patient_id,
            case.created_at,
        )
        assert studies[case.pk].uid_pseudonym is None


def test_a_patient_has_one_study_per_dicom_study_even_with_many_slices(owner, settings):
    settings.TUMORSITE_PSEUDONYM_KEY = KEY
    for instance in (1, 2, 3):
        case_create(image_file=_slice_file(instance=instance, z=instance * 2.5), filename="s.dcm", user=owner)
    case_create(image_file=_multi_frame(2), filename="m.dcm", user=owner)  # the same study UID
    assert Study.objects.count() == 1 and Study.objects.get().cases.count() == 5

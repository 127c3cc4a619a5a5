"""A DICOM case's masks as a DICOM Segmentation (highdicom) that references the stored source image, and
its NIfTI mask with the slice's real geometry; a case that is not DICOM is told why it gets no SEG."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.urls import reverse
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases.dicom_out import DUMMY_DATE
from cases.review import case_mask_correct
from cases.selectors import scan_dicom_header
from cases.services import case_create
from segmentation.testing import make_case, synthetic_slice
from tests.cases.builders import PHI, dicom_bytes
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
# Pixel Spacing is (row spacing, column spacing): 0.5 mm between rows, 0.6 mm between columns.
ROW_MM, COL_MM = 0.5, 0.6


def mr_dicom(*, thickness: str | None = "6", between: str | None = None, geometry: bool = True) -> bytes:
    """pydicom's MR_small (64 x 64, a real scanner's header) with a patient's identifiers, Pixel Spacing
    (0.5, 0.6) and the given Slice Thickness / Spacing Between Slices."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.PixelSpacing = [ROW_MM, COL_MM]
    del ds.SliceThickness
    if thickness is not None:
        ds.SliceThickness = thickness
    if between is not None:
        ds.SpacingBetweenSlices = between
    if not geometry:
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def lesion(shape=(64, 64)) -> np.ndarray:
    """An asymmetric outline, so a transposed or flipped export cannot pass for the right one."""
    mask = np.zeros(shape, bool)
    mask[10:30, 20:26] = True
    mask[40:44, 5:50] = True
    return mask


@pytest.fixture
def dicom_case(clinician, media_dir):
    case = case_create(image_file=mr_dicom(), filename="Doe^Jane_MRN-0042.dcm", user=clinician)
    return case_mask_correct(case=case, mask=lesion(), user=clinician)


@pytest.fixture
def api(clinician):
    """The clinician signed in (a session: the pages' downloads are checked too, beside the API's)."""
    client = APIClient()
    client.force_login(clinician)
    return client


def _seg(response):
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/dicom"
    assert response["Content-Disposition"].endswith('_seg.dcm"')
    return pydicom.dcmread(io.BytesIO(response.content)), hd.seg.segread(io.BytesIO(response.content))


def _mask_of(seg: hd.seg.Segmentation, source_uid: str) -> np.ndarray:
    """The segment's pixels on the source image, as highdicom finds them by the source's SOP Instance UID."""
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[source_uid], segment_numbers=[1])
    assert pixels.shape == (1, 64, 64, 1)
    return pixels[0, :, :, 0] > 0


def test_the_seg_of_a_dicom_case_reads_back_with_the_source_geometry_and_references(dicom_case, api):
    source = scan_dicom_header(scan=dicom_case.scan)
    ds, seg = _seg(api.get(reverse("api:case-mask-dicom", args=[dicom_case.pk])))

    assert ds.SOPClassUID == SEG_STORAGE and ds.Modality == "SEG"
    assert ds.SegmentationType == "BINARY"
    assert seg.number_of_segments == 1
    segment = seg.get_segment_description(1)
    assert segment.segment_label == "Tumour"
    assert segment.segmented_property_category == codes.SCT.MorphologicallyAbnormalStructure
    assert segment.segmented_property_type == codes.SCT.Neoplasm
    assert segment.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.MANUAL
    # Geometry: the source's size, spacing and frame of reference, in the same study.
    assert (ds.Rows, ds.Columns) == (source.Rows, source.Columns) == (64, 64)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert (
        [float(v) for v in measures.PixelSpacing] == [ROW_MM, COL_MM] == list(map(float, source.PixelSpacing))
    )
    assert float(measures.SliceThickness) == 6.0
    assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    # References: the stored source image, by series and instance, and per frame.
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence] == [source.SOPInstanceUID]
    assert seg.get_source_image_uids() == [
        (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
    ]
    # Pixels: the mask itself, pixel for pixel, as highdicom reads it back by the source instance.
    np.testing.assert_array_equal(_mask_of(seg, source.SOPInstanceUID), lesion())


def test_the_seg_names_no_one_the_de_identified_source_does_not(dicom_case, api):
    source = scan_dicom_header(scan=dicom_case.scan)
    response = api.get(reverse("api:case-mask-dicom", args=[dicom_case.pk]))
    ds, _ = _seg(response)

    for value in [*PHI.values(), "Doe", "MRN-0042", "19700101", "Jane"]:
        assert value.encode() not in response.content, value
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyID",
    ):
        assert str(ds.get(keyword) or "") == str(source.get(keyword) or ""), keyword
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == source.DeidentificationMethod
    assert "ContentCreatorName" not in ds or not ds.ContentCreatorName
    # Every date and time in the SEG is the source's, or PS3.15's dummy: no day the outline was drawn.
    source_values = {str(e.value) for e in source.iterall() if e.VR in ("DA", "DT", "TM") and e.value}
    seg_values = {str(e.value) for e in ds.iterall() if e.VR in ("DA", "DT", "TM") and e.value}
    assert seg_values - source_values <= {DUMMY_DATE, "000000"}
    assert "InstanceCreationDate" not in ds
    assert response["Content-Disposition"] == (
        f'attachment; filename="case{dicom_case.pk}_corrected_mask_v1_seg.dcm"'
    )


def test_a_model_mask_exports_as_automatic_naming_the_model_and_its_weights(dicom_case, api):
    run = add_finished_run(dicom_case, "unet_a", lesion())
    run.weights = "unet_a@0123456789ab"
    run.save()
    ds, seg = _seg(api.get(reverse("api:segmentation-dicom", args=[run.pk])))

    segment = seg.get_segment_description(1)
    assert segment.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    algorithm = segment.algorithm_identification[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("unet_a", "unet_a@0123456789ab")
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    # The page serves the same object, with the same UID: one mask, one SEG instance in a PACS.
    page = _seg(api.get(reverse("run-mask", args=[dicom_case.pk, run.pk, "dcm"])))[0]
    assert page.SOPInstanceUID == ds.SOPInstanceUID
    manual = _seg(api.get(reverse("case-mask", args=[dicom_case.pk, "dcm"])))[0]
    assert manual.SOPInstanceUID != ds.SOPInstanceUID
    assert manual.SeriesInstanceUID != ds.SeriesInstanceUID


def test_each_mask_version_exports_its_own_outline(dicom_case, api, clinician):
    second = np.zeros((64, 64), bool)
    second[50:60, 50:60] = True
    case_mask_correct(case=dicom_case, mask=second, user=clinician)
    first = _seg(api.get(reverse("api:case-mask-version-dicom", args=[dicom_case.pk, 1])))[1]
    current = _seg(api.get(reverse("case-mask", args=[dicom_case.pk, "dcm"])))[1]
    version_2 = _seg(api.get(reverse("case-mask-version", args=[dicom_case.pk, 2, "dcm"])))[1]

    assert (first.InstanceNumber, version_2.InstanceNumber) == (1, 2)
    assert current.SOPInstanceUID == version_2.SOPInstanceUID != first.SOPInstanceUID
    source_uid = scan_dicom_header(scan=dicom_case.scan).SOPInstanceUID
    np.testing.assert_array_equal(_mask_of(first, source_uid), lesion())
    np.testing.assert_array_equal(_mask_of(version_2, source_uid), second)


def test_a_case_that_is_not_dicom_gets_a_problem_saying_why_and_no_seg_link(clinician, api, media_dir):
    case = make_case(user=clinician, size=64)
    case_mask_correct(case=case, mask=lesion(), user=clinician)

    response = api.get(reverse("api:case-mask-dicom", args=[case.pk]))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert "not DICOM" in response.json()["detail"] and "PNG or NIfTI" in response.json()["detail"]
    assert api.get(reverse("api:case-mask-version-dicom", args=[case.pk, 1])).status_code == 404
    assert api.get(reverse("case-mask", args=[case.pk, "dcm"])).status_code == 404
    state = api.get(reverse("case-state", args=[case.pk])).json()
    assert state["ground_truth"]["mask_dicom"] is None
    assert "DICOM SEG" not in api.get(reverse("case-detail", args=[case.pk])).content.decode()


def test_a_dicom_without_the_frame_of_reference_its_iod_requires_gets_a_problem_saying_so(
    clinician, api, media_dir
):
    # The builders' MR slice has no Frame of Reference UID, which MR Image Storage requires (PS3.3 A.4).
    case = case_create(
        image_file=dicom_bytes(np.zeros((64, 64), np.uint16)), filename="s.dcm", user=clinician
    )
    case_mask_correct(case=case, mask=lesion(), user=clinician)
    response = api.get(reverse("api:case-mask-dicom", args=[case.pk]))
    assert response.status_code == 404
    assert "Frame Of Reference" in response.json()["detail"]


def test_a_frame_of_a_classic_multi_frame_file_gets_a_problem_saying_why(clinician, api, media_dir):
    # pydicom's rtdose.dcm: 15 frames of an RT Dose grid, each a case, none with functional groups.
    case = case_create(image_file=Path(get_testdata_file("rtdose.dcm")).read_bytes(), user=clinician)
    mask = np.zeros((case.scan.height, case.scan.width), bool)
    mask[2:5, 2:6] = True
    case_mask_correct(case=case, mask=mask, user=clinician)
    response = api.get(reverse("api:case-mask-dicom", args=[case.pk]))
    assert response.status_code == 404
    assert "one frame of a multi-frame file (RT Dose Storage)" in response.json()["detail"]


def test_a_seg_takes_the_spacing_between_slices_when_the_source_has_no_slice_thickness(
    clinician, api, media_dir
):
    case = case_create(image_file=mr_dicom(thickness=None, between="4.5"), filename="s.dcm", user=clinician)
    case_mask_correct(case=case, mask=lesion(), user=clinician)
    ds, _ = _seg(api.get(reverse("api:case-mask-dicom", args=[case.pk])))
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == 4.5


def test_the_case_page_offers_the_seg_beside_png_and_nifti(dicom_case, api):
    run = add_finished_run(dicom_case, "unet_a", lesion())
    state = api.get(reverse("case-state", args=[dicom_case.pk])).json()
    assert state["ground_truth"]["mask_dicom"] == reverse("case-mask", args=[dicom_case.pk, "dcm"])
    assert state["segmentations"][0]["mask_dicom"] == reverse("run-mask", args=[dicom_case.pk, run.pk, "dcm"])
    page = api.get(reverse("case-detail", args=[dicom_case.pk])).content.decode()
    assert reverse("case-mask-version", args=[dicom_case.pk, 1, "dcm"]) in page


def test_a_seg_download_is_audited_like_the_other_mask_downloads(dicom_case, api):
    before = AuditEntry.objects.filter(event="mask.downloaded").count()
    _seg(api.get(reverse("api:case-mask-dicom", args=[dicom_case.pk])))
    assert AuditEntry.objects.filter(event="mask.downloaded").count() == before + 1


def test_the_schema_documents_the_seg_downloads_as_application_dicom(api):
    schema = api.get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in (
        "/api/cases/{case_id}/mask.dcm",
        "/api/cases/{case_id}/masks/{number}.dcm",
        "/api/segmentations/{run_id}/mask.dcm",
    ):
        responses = schema["paths"][path]["get"]["responses"]
        assert "application/dicom" in responses["200"]["content"], path
        assert "404" in responses, path


def _nifti(api, case) -> nib.Nifti1Image:
    response = api.get(reverse("case-mask", args=[case.pk, "nii.gz"]))
    assert response.status_code == 200
    return nib.Nifti1Image.from_bytes(gzip.decompress(response.content))


def test_the_nifti_of_a_dicom_case_has_its_spacing_and_slice_thickness_in_index_order(dicom_case, api):
    image = _nifti(api, dicom_case)
    # NIfTI index (i, j, k) = (column, row, slice): i steps between columns (0.6 mm), j between rows
    # (0.5 mm), k is the 6 mm slice. Pixel Spacing lists them the other way round: (row, column).
    assert image.header.get_zooms() == pytest.approx((COL_MM, ROW_MM, 6.0))
    assert image.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(np.asarray(image.dataobj)[:, :, 0].T > 0, lesion())
    # The scanner's affine: voxel (0, 0, 0) is the first pixel's centre, Image Position (Patient) in
    # DICOM's LPS, which NIfTI's RAS writes with x and y negated.
    source = scan_dicom_header(scan=dicom_case.scan)
    x, y, z = (float(v) for v in source.ImagePositionPatient)
    assert image.affine[:3, 3] == pytest.approx([-x, -y, z])
    assert image.header.get_sform(coded=True)[1] == 1  # scanner coordinates
    assert b"unknown" not in image.header["descrip"].tobytes()


@pytest.mark.parametrize(
    ("thickness", "between", "expected", "said"),
    [(None, "4.5", 4.5, False), (None, None, 1.0, True), ("0", None, 1.0, True)],
    ids=["spacing-between-slices", "neither", "zero-thickness"],
)
def test_the_nifti_thickness_falls_back_to_the_slice_spacing_then_to_1_mm_said_so(
    clinician, api, media_dir, thickness, between, expected, said
):
    case = case_create(
        image_file=mr_dicom(thickness=thickness, between=between), filename="s.dcm", user=clinician
    )
    case_mask_correct(case=case, mask=lesion(), user=clinician)
    image = _nifti(api, case)
    assert image.header.get_zooms()[2] == pytest.approx(expected)
    assert (b"slice thickness unknown, 1 mm written" in image.header["descrip"].tobytes()) is said


def test_a_dicom_slice_without_position_gets_its_voxel_size_without_a_scanner_affine(
    clinician, api, media_dir
):
    case = case_create(image_file=mr_dicom(geometry=False), filename="s.dcm", user=clinician)
    case_mask_correct(case=case, mask=lesion(), user=clinician)
    image = _nifti(api, case)
    assert image.header.get_zooms() == pytest.approx((COL_MM, ROW_MM, 6.0))
    assert image.affine == pytest.approx(np.diag([COL_MM, ROW_MM, 6.0, 1.0]))


def test_a_png_case_nifti_keeps_unit_voxels_of_unknown_size(clinician, api, media_dir):
    case = make_case(user=clinician, size=64)
    _, outline = synthetic_slice(64, center=(30, 30), radius=6)
    case_mask_correct(case=case, mask=outline, user=clinician)
    image = _nifti(api, case)
    assert image.header.get_zooms() == (1.0, 1.0, 1.0)
    assert image.header.get_xyzt_units()[0] == "unknown"


# dciodvfy (dicom3tools, in the dev dependencies) checks an object against the IOD's modules. It also warns
# about what a DICOMDIR would need (Patient ID, Study Date...), which de-identification empties on purpose.
DCIODVFY = Path(sys.executable).with_name("dciodvfy")


@pytest.mark.parametrize("source", ["manual", "automatic"])
def test_the_seg_passes_the_dicom_iod_validator_without_an_error(dicom_case, api, tmp_path, source):
    if source == "automatic":
        run = add_finished_run(dicom_case, "unet_a", lesion())
        response = api.get(reverse("api:segmentation-dicom", args=[run.pk]))
    else:
        response = api.get(reverse("api:case-mask-dicom", args=[dicom_case.pk]))
    _seg(response)
    path = tmp_path / "seg.dcm"
    path.write_bytes(response.content)
    checked = subprocess.run([DCIODVFY, "-new", path], capture_output=True, text=True, timeout=60)
    report = (checked.stdout + checked.stderr).splitlines()
    assert any("Segmentation" in line for line in report), report  # it did recognise the IOD
    assert [line for line in report if line.startswith("Error")] == []

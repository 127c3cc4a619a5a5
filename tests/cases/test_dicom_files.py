"""Real DICOM files nobody here wrote: every test file bundled with pydicom (issue #32, item 1).

Each file that holds one 2D grayscale image (MR_small, CT_small and their JPEG-LS, JPEG 2000, RLE and
big-endian variants, the DICOMDIR test series...) must become a case, each multi-frame grayscale file
(the RT Dose grids rtdose*.dcm: 15 frames) one study of a case per frame (#32, item 1); every other
one must be refused with a message that names the reason. Which is which is decided here from the
file's own header, not by the reader. Only the files pydicom installs are used: the larger set of the
``pydicom-data`` package is downloaded on demand, which this machine cannot do.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from pydicom import uid
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels import get_decoder
from rest_framework.test import APIClient

from cases.models import Case
from cases.readers import ImageReadError, detect_format, read_image, read_images
from cases.services import case_create
from tests.cases.builders import dicom_bytes

DATA_DIR = Path(pydicom.data.__file__).parent / "test_files"

# Files whose header describes one grayscale 2D image but whose pixel data no decoder can read, with
# the reason (pydicom's data/test_files/README.txt says so for the first two).
UNDECODABLE = {
    # 12-bit JPEG Extended with SOS parameters that the decoders refuse; JPGExtended.dcm is its fixed copy.
    "JPEG-lossy.dcm": "JPEG Extended (Process 2 and 4)",
    # A copy of JPEG2000.dcm with 4 bytes of the JPEG 2000 stream overwritten.
    "JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000 Image Compression",
    "MR_truncated.dcm": "Explicit VR Little Endian",
}


@dataclass(frozen=True)
class Expected:
    accepted: bool
    words: str = ""  # what the refusal's message must say
    frames: int = 1


def _bundled_files() -> list[str]:
    """Every bundled test file (folders left out), relative to pydicom's test_files folder."""
    return sorted(str(Path(f).relative_to(DATA_DIR)) for f in get_testdata_files() if Path(f).is_file())


def _header(data: bytes) -> pydicom.Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=False)
            for _ in ds:
                pass
    except Exception:  # anything pydicom cannot parse is simply not DICOM here
        return None
    return ds


def _expected(name: str, data: bytes) -> Expected:
    """What should happen to a file, from its header: the definition of 'one 2D grayscale image'."""
    ds = _header(data)
    marked = data[128:132] == b"DICM"
    if ds is None:
        return Expected(False, "truncated or damaged" if marked else "not an image we can read")
    if not marked and not any(k in ds for k in ("SOPClassUID", "Modality", "PixelData", "Rows")):
        return Expected(False, "not an image we can read")
    if "PixelData" not in ds:
        return Expected(False, "no image in it (no pixel data)")
    frames = str(ds.get("NumberOfFrames", 1) or 1)
    if not frames.isdigit():
        return Expected(False, "header is damaged: Number of Frames")
    if not ds.get("Rows") or not ds.get("Columns"):
        return Expected(False, "no image size")
    if int(ds.get("SamplesPerPixel", 1)) != 1 or ds.get("PhotometricInterpretation") not in (
        "MONOCHROME1",
        "MONOCHROME2",
    ):
        return Expected(False, f"in colour ({ds.get('PhotometricInterpretation')})")
    if Path(name).name in UNDECODABLE:
        return Expected(False, f"({UNDECODABLE[Path(name).name]}) cannot be decoded")
    return Expected(True, frames=int(frames))


BUNDLED = _bundled_files()
ACCEPTED = [name for name in BUNDLED if _expected(name, (DATA_DIR / name).read_bytes()).accepted]
MULTI_FRAME = [name for name in ACCEPTED if _expected(name, (DATA_DIR / name).read_bytes()).frames > 1]


def test_the_bundled_files_are_there_and_cover_what_issue_32_names():
    # 176 files with pydicom 3.0.2, 56 of them accepted (3 multi-frame); the floors catch an install that
    # lost its test data.
    assert len(BUNDLED) >= 150
    for name in (
        "MR_small.dcm",  # a TIFF header in its preamble
        "CT_small.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEGLSNearLossless_16.dcm",
        "MR_small_jp2klossless.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "JPGExtended.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",  # deflated
    ):
        assert name in ACCEPTED, name
    assert len(ACCEPTED) >= 45
    assert {"rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"} <= set(MULTI_FRAME)


def _original_pixels(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True).pixel_array


def _assert_deidentified(original: bytes, stored: bytes, frame: int | None = None) -> None:
    before, after = _header(original), pydicom.dcmread(io.BytesIO(stored))
    assert stored[128:132] == b"DICM"
    assert after.PatientIdentityRemoved == "YES"
    assert not any(elem.tag.is_private for elem in after)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
        assert not after.get(keyword)
        value = str(before.get(keyword) or "")
        if len(value) >= 4:  # shorter values ("M", "0") occur in any file by chance
            assert value.encode() not in stored, keyword
    for keyword in ("InstitutionName", "OperatorsName", "ReferringPhysicianName"):
        assert not after.get(keyword)
    if before.get("StudyInstanceUID"):
        assert after.StudyInstanceUID != before.StudyInstanceUID
        assert after.SOPInstanceUID != before.SOPInstanceUID
    expected = _original_pixels(original)
    if frame is not None:  # one frame of a multi-frame file, stored as a single-frame file
        assert after.NumberOfFrames == 1 and after.InstanceNumber == frame
        expected = expected[frame - 1]
    np.testing.assert_array_equal(after.pixel_array, expected)


@pytest.mark.parametrize("name", BUNDLED)
def test_each_bundled_file_is_read_or_refused_with_its_reason(name):
    data = (DATA_DIR / name).read_bytes()
    expected = _expected(name, data)
    if not expected.accepted:
        with pytest.raises(ImageReadError) as error:
            read_images(data, Path(name).name)
        assert expected.words in str(error.value), str(error.value)
        assert "Traceback" not in str(error.value) and len(str(error.value)) < 500
        return
    images = read_images(data, Path(name).name)
    header = _header(data)
    assert len(images) == expected.frames
    for number, image in enumerate(images, start=1):
        assert image.format == "dicom"
        assert image.pixels.shape == (header.Rows, header.Columns)
        assert np.isfinite(image.pixels).all()
        assert image.metadata["deidentified"] and image.metadata["TransferSyntaxUID"]
        _assert_deidentified(data, image.stored_bytes, frame=number if expected.frames > 1 else None)
    if expected.frames == 1:
        assert read_image(data, Path(name).name).stored_bytes == images[0].stored_bytes
    else:
        with pytest.raises(ImageReadError, match=f"holds {expected.frames} frames"):
            read_image(data, Path(name).name)  # single slices only: the imports and stored scans


@pytest.mark.django_db
@pytest.mark.parametrize("name", ACCEPTED)
def test_each_accepted_bundled_file_becomes_a_case(name, owner):
    data = (DATA_DIR / name).read_bytes()
    case = case_create(image_file=data, filename=Path(name).name, user=owner)
    header = _header(data)
    frames = _expected(name, data).frames
    assert (case.scan.format, case.scan.height, case.scan.width) == ("dicom", header.Rows, header.Columns)
    assert list(case.study.cases.order_by("slice_number").values_list("slice_number", flat=True)) == (
        list(range(1, frames + 1)) if frames > 1 else [header.get("InstanceNumber")]
    )
    for number, frame_case in enumerate(case.study.cases.order_by("slice_number"), start=1):
        with frame_case.scan.file.open("rb") as f:
            _assert_deidentified(data, f.read(), frame=number if frames > 1 else None)


@pytest.mark.django_db
def test_mr_small_uploads_through_the_api(owner):
    data = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    assert data[:4] == b"II*\x00"  # the TIFF header in the preamble that used to get it refused
    api = APIClient()
    api.force_authenticate(owner)
    response = api.post(
        "/api/cases/",
        {"image": SimpleUploadedFile("MR_small.dcm", data, content_type="application/dicom")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    case = Case.objects.get(pk=response.json()["id"])
    assert (case.scan.format, case.scan.height, case.scan.width) == ("dicom", 64, 64)
    with case.scan.file.open("rb") as f:
        _assert_deidentified(data, f.read())


@pytest.mark.django_db
def test_a_colour_dicom_through_the_api_gets_a_problem_naming_the_reason(owner):
    data = Path(get_testdata_file("SC_rgb_jpeg_gdcm.dcm")).read_bytes()
    api = APIClient()
    api.force_authenticate(owner)
    response = api.post("/api/cases/", {"image": SimpleUploadedFile("rgb.dcm", data)}, format="multipart")
    assert response.status_code == 400
    assert "in colour (RGB)" in response.json()["detail"]
    assert Case.objects.count() == 0


# === Transfer syntaxes the bundled files lack in grayscale, made here ===


@pytest.mark.parametrize(
    "syntax",
    [
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,
        uid.JPEGLosslessSV1,
        uid.JPEGLSLossless,
        uid.JPEGLSNearLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.RLELossless,
        uid.DeflatedExplicitVRLittleEndian,
    ],
    ids=lambda syntax: syntax.name,
)
def test_a_decoder_is_installed_for_each_common_transfer_syntax(syntax):
    assert get_decoder(syntax).is_available, get_decoder(syntax).missing_dependencies


def test_a_colour_jpeg_lossless_file_is_decoded_before_it_is_refused_as_colour():
    # No grayscale JPEG Lossless file is bundled; this one proves the decoder reads the syntax.
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))
    assert ds.file_meta.TransferSyntaxUID == uid.JPEGLosslessSV1
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns, 3)


def _recoded(syntax, pixels: np.ndarray) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    if syntax == uid.JPEGBaseline8Bit:  # pydicom has no JPEG encoder: Pillow's, encapsulated
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.LossyImageCompression = "01"
    else:
        ds.compress(syntax)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    "syntax", [uid.JPEGBaseline8Bit, uid.JPEG2000Lossless, uid.RLELossless], ids=lambda s: s.name
)
def test_a_grayscale_slice_compressed_here_reads_back(syntax):
    pixels = (np.add.outer(np.arange(40), np.arange(48)) * 2).astype(np.uint16)
    data = _recoded(syntax, pixels)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == syntax
    image = read_image(data, "slice.dcm")
    assert image.pixels.shape == (40, 48)
    stored = pydicom.dcmread(io.BytesIO(image.stored_bytes))
    assert stored.file_meta.TransferSyntaxUID == syntax and stored.PatientIdentityRemoved == "YES"
    decoded = stored.pixel_array.astype(int)
    if syntax == uid.JPEGBaseline8Bit:
        assert np.abs(decoded - pixels).mean() < 2
    else:
        np.testing.assert_array_equal(decoded, pixels)


def test_a_transfer_syntax_without_a_decoder_is_named():
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid.MPEG2MPML
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(
        ImageReadError, match=r"encoded as MPEG2 Main Profile / Main Level, which TumorSite cannot"
    ):
        read_image(out.getvalue(), "video.dcm")


# === Files without the DICM marker ===


def _bare_dataset(name: str, *, implicit: bool) -> bytes:
    """The data set of a bundled file without its preamble and file meta, as some older tools write."""
    ds = pydicom.dcmread(get_testdata_file(name))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit VR", "explicit VR"])
def test_a_bare_data_set_without_preamble_is_read_as_dicom(implicit):
    data = _bare_dataset("CT_small.dcm", implicit=implicit)
    assert data[128:132] != b"DICM"
    assert detect_format(data, "IM0001") == "dicom"
    image = read_image(data, "IM0001")
    assert image.pixels.shape == (128, 128)
    stored = pydicom.dcmread(io.BytesIO(image.stored_bytes))  # a proper Part 10 file now
    assert image.stored_bytes[128:132] == b"DICM" and stored.PatientIdentityRemoved == "YES"
    np.testing.assert_array_equal(
        stored.pixel_array, _original_pixels(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    )


def test_a_dcm_name_on_bytes_that_are_not_dicom_is_refused_as_not_dicom():
    data = Path(get_testdata_file("no_meta.dcm")).read_bytes()  # a stray byte before the data set
    with pytest.raises(ImageReadError, match=r"no DICOM marker \('DICM' at byte 128\)"):
        read_image(data, "no_meta.dcm")

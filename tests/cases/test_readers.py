"""Each reader on good files, and every kind of bad file with its plain-words error."""

import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image

from cases.readers import ImageReadError, detect_format, read_image, to_uint8
from tests.cases.builders import PHI, dicom_bytes, png_bytes, synthetic_slice, write_figshare_mat


def _encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _mat_bytes(tmp_path, **kwargs) -> bytes:
    image = np.zeros((8, 12), np.int16)
    image[1:3, 8:11] = 900
    path = write_figshare_mat(tmp_path / "1.mat", image, image > 0, **kwargs)
    return path.read_bytes()


# === Good files ===


def test_png_is_read_as_8bit_grayscale():
    pixels, _ = synthetic_slice(40, 50)
    image = read_image(png_bytes(pixels), "slice.png")
    assert (image.format, image.width, image.height) == ("png", 50, 40)
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.mask is None and image.label is None and image.pixel_spacing_mm is None


def test_16bit_png_keeps_its_16_bits():
    pixels = (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 97).astype(np.uint16)
    image = read_image(_encode(pixels, "PNG"), "deep.png")
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pixels)


@pytest.mark.parametrize(
    ("mode", "fmt", "filename"),
    [
        ("RGB", "PNG", "c.png"),
        ("RGBA", "PNG", "c.png"),
        ("P", "PNG", "c.png"),
        ("RGB", "JPEG", "c.jpg"),
        ("RGB", "TIFF", "c.tif"),
    ],
)
def test_colour_images_become_grayscale(mode, fmt, filename):
    gray, _ = synthetic_slice(32, 32)
    colour = Image.fromarray(gray).convert(mode)
    buffer = io.BytesIO()
    colour.save(buffer, format=fmt)
    image = read_image(buffer.getvalue(), filename)
    assert image.pixels.shape == (32, 32) and image.pixels.dtype == np.uint8
    difference = np.abs(image.pixels.astype(int) - gray.astype(int))
    assert (difference.mean() < 6) if fmt == "JPEG" else (difference.max() <= 1)


def test_jpeg_and_tiff_are_recognised_by_their_bytes_not_their_names():
    gray, _ = synthetic_slice(16, 24)
    assert read_image(_encode(gray, "JPEG"), "upload.bin").format == "jpeg"
    tiff = read_image(_encode(gray, "TIFF"), "upload")
    assert tiff.format == "tiff"
    np.testing.assert_array_equal(tiff.pixels, gray)


def test_dicom_applies_rescale_and_window_and_reads_spacing():
    raw = np.array([[0, 50, 100], [150, 200, 250]], dtype=np.uint16)
    image = read_image(dicom_bytes(raw, rescale=(2, -100), window=(100, 200), spacing=(0.5, 0.75)), "a.dcm")
    assert (image.format, image.width, image.height) == ("dicom", 3, 2)
    assert (image.pixel_spacing_mm, image.pixel_spacing_col_mm) == (0.5, 0.75)
    # Rescaled values are -100, 0, 100, 200, 300, 400; the window 0..200 clips below and above.
    flat = image.pixels.ravel()
    assert flat[0] == flat[1] == flat.min()
    assert flat[4] == flat[5] == flat.max()
    assert flat[1] < flat[2] < flat[3]
    assert image.metadata["Modality"] == "MR" and image.metadata["RescaleSlope"] == 2.0


def test_monochrome1_dicom_is_inverted_so_bright_means_high():
    raw = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    normal = read_image(dicom_bytes(raw, window=None), "a.dcm").pixels
    inverted = read_image(dicom_bytes(raw, window=None, photometric="MONOCHROME1"), "a.dcm").pixels
    assert np.argmax(normal) == 3 and np.argmax(inverted) == 0


def test_dicom_is_deidentified_before_it_is_handed_back():
    original = dicom_bytes()
    image = read_image(original, "a.dcm")
    stored = image.stored_bytes
    for value in PHI.values():
        assert value.encode() in original
        assert value.encode() not in stored, value
    assert b"private note" not in stored
    ds = pydicom.dcmread(io.BytesIO(stored))
    assert ds.PatientIdentityRemoved == "YES"
    assert "PatientName" in ds and not ds.PatientName  # type 2: kept, emptied
    assert "InstitutionName" not in ds and "OperatorsName" not in ds
    before = pydicom.dcmread(io.BytesIO(original))
    assert ds.StudyInstanceUID != before.StudyInstanceUID and ds.SOPInstanceUID != before.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    np.testing.assert_array_equal(ds.pixel_array, before.pixel_array)
    assert image.patient_id is None


def test_the_same_dicom_deidentifies_to_the_same_bytes():
    original = dicom_bytes()
    assert read_image(original, "a.dcm").stored_bytes == read_image(original, "b.dcm").stored_bytes


def test_figshare_mat_gives_image_mask_label_patient_and_border(tmp_path):
    image = read_image(
        _mat_bytes(tmp_path, label=3, pid="MR05", border=np.array([1.0, 2.0, 3.0, 4.0])), "1.mat"
    )
    assert (image.format, image.width, image.height) == ("mat", 12, 8)
    assert image.pixels.dtype == np.int16
    assert image.label == "pituitary" and image.patient_id == "MR05"
    np.testing.assert_array_equal(image.tumour_border, [[1.0, 2.0], [3.0, 4.0]])
    # Orientation: the blob written at rows 1-2, columns 8-10 comes back there.
    assert image.mask.dtype == bool
    assert {tuple(p) for p in np.argwhere(image.mask)} == {(r, c) for r in (1, 2) for c in (8, 9, 10)}
    assert image.pixels[1, 8] == 900


def test_to_uint8_stretches_anything_but_uint8():
    assert to_uint8(np.array([[3, 7]], np.uint8)).tolist() == [[3, 7]]
    assert to_uint8(np.array([[-100.0, 0.0, 300.0]])).tolist() == [[0, 64, 255]]
    assert to_uint8(np.full((2, 2), 5, np.uint16)).tolist() == [[0, 0], [0, 0]]


# === Bad files: one clear message each ===

GOOD_PNG = png_bytes(synthetic_slice(64, 64)[0])


def _mat_without_cjdata(tmp_path):
    return _mat_bytes(tmp_path, with_cjdata=False)


def _multipage_tiff(_tmp_path):
    buffer = io.BytesIO()
    frames = [Image.fromarray(synthetic_slice(16, 16)[0]) for _ in range(3)]
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


BAD_FILES = {
    # name: (builder(tmp_path) -> bytes, filename, words the message must contain)
    "empty": (lambda _: b"", "x.png", "empty"),
    "truncated png": (lambda _: GOOD_PNG[: len(GOOD_PNG) // 2], "x.png", "truncated"),
    "truncated jpeg": (lambda _: _encode(synthetic_slice()[0], "JPEG")[:200], "x.jpg", "truncated"),
    "text file": (lambda _: b"patient notes, not an image\n" * 5, "notes.txt", "not an image"),
    "text named .png": (lambda _: b"patient notes, not an image\n" * 5, "notes.png", "not an image"),
    "pdf": (lambda _: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "report.pdf", "not an image"),
    "mat without cjdata": (_mat_without_cjdata, "1.mat", "no 'cjdata'"),
    "truncated mat": (lambda p: _mat_bytes(p)[:900], "1.mat", "truncated"),
    "mat header only": (lambda p: _mat_bytes(p)[:512], "1.mat", "truncated"),
    "not a mat": (lambda _: b"just text" * 20, "1.mat", "not a MATLAB v7.3"),
    "multi-frame dicom": (lambda _: dicom_bytes(frames=4), "cine.dcm", "multi-frame"),
    "truncated dicom": (lambda _: dicom_bytes()[:-40], "a.dcm", "cannot be decoded"),
    "dicom header only": (lambda _: dicom_bytes()[:400], "a.dcm", "no image"),
    "burned-in dicom": (lambda _: dicom_bytes(burned_in=True), "a.dcm", "burned into the image"),
    "dicom with a damaged pixel spacing": (
        lambda _: dicom_bytes().replace(b"0.5\\0.75", b"0.5\\abcd"),  # same length: the header stays whole
        "a.dcm",
        "header is damaged: Pixel Spacing",
    ),
    "multi-page tiff": (_multipage_tiff, "stack.tif", "holds 3 images"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_files_get_a_plain_words_error(case, tmp_path):
    build, filename, words = BAD_FILES[case]
    with pytest.raises(ImageReadError, match=words) as error:
        read_image(build(tmp_path), filename)
    assert "Traceback" not in str(error.value)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_decoded():
    with pytest.raises(ImageReadError, match=r"too large \(.* MB\); the limit is 1 MB"):
        read_image(GOOD_PNG + b"\0" * (1024 * 1024), "big.png", max_bytes=1024 * 1024)


@pytest.mark.parametrize(
    "data,filename",
    [
        (GOOD_PNG, "x.png"),
        (_encode(synthetic_slice()[0], "TIFF"), "x.tif"),
        (dicom_bytes(np.zeros((64, 64))), "x.dcm"),
    ],
    ids=["png", "tiff", "dicom"],
)
def test_an_image_over_the_pixel_limit_is_refused(data, filename):
    with pytest.raises(ImageReadError, match=r"too large .*64x64 pixels"):
        read_image(data, filename, max_pixels=64 * 64 - 1)


def test_mat_over_the_pixel_limit_is_refused(tmp_path):
    with pytest.raises(ImageReadError, match=r"too large \(12x8 pixels\)"):
        read_image(_mat_bytes(tmp_path), "1.mat", max_pixels=50)


def test_a_huge_image_is_refused_from_its_header():
    with pytest.raises(ImageReadError, match="too large"):
        read_image(b"\x89PNG\r\n\x1a\n" + _bomb_ihdr(), "bomb.png")


def test_pillow_decompression_bomb_guard_is_on_even_with_a_generous_limit():
    with pytest.raises(ImageReadError, match="decompression-bomb"):
        read_image(b"\x89PNG\r\n\x1a\n" + _bomb_ihdr(), "bomb.png", max_pixels=10**9)


def _bomb_ihdr() -> bytes:
    """PNG chunks claiming 20000x20000 pixels over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "a.jpg", "png"),
        (b"\xff\xd8\xff\xe0", "a.png", "jpeg"),
        (b"II*\x00", "", "tiff"),
        (b"\0" * 128 + b"DICM", "", "dicom"),
        # The DICM marker wins over a TIFF header in the preamble (pydicom's MR_small.dcm, issue #32).
        (b"II*\x00" + b"\0" * 124 + b"DICM", "a.tif", "dicom"),
        # A bare data set (no preamble, no file meta), explicit and implicit VR.
        (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", "", "dicom"),
        (b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100", "", "dicom"),
        (b"\x08\x00\x05\x00\xff\xff\xff\x7f", "", None),  # a length longer than the file
        (b"MATLAB 7.3 MAT-file", "", "mat"),
        (b"????", "scan.DCM", "dicom"),
        (b"????", "scan.doc", None),
    ],
)
def test_format_comes_from_magic_bytes_then_the_extension(data, filename, expected):
    assert detect_format(data, filename) == expected


def test_a_transfer_syntax_whose_decoder_is_not_installed_says_so(monkeypatch):
    class Missing:
        is_available = False

    monkeypatch.setattr("cases.readers.dicom.get_decoder", lambda syntax: Missing())
    with pytest.raises(ImageReadError, match=r"No decoder for Explicit VR Little Endian is installed"):
        read_image(dicom_bytes(), "a.dcm")

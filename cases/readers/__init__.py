"""Image readers: bytes in, a grayscale slice plus metadata out. No Django here.

``read_image(data, filename)`` picks the reader from the file's first bytes (its extension only when
the bytes say nothing) and raises ``ImageReadError`` with a plain-words message on anything unusable.
``read_images`` does the same for uploads, where a multi-frame DICOM file gives one slice per frame.
"""

from __future__ import annotations

from pathlib import PurePath

from .base import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    FIGSHARE_LABELS,
    DicomStudy,
    ImageReadError,
    Limits,
    ScanImage,
    to_uint8,
)
from .deidentify import deidentify
from .dicom import has_dicm_marker, is_bare_dataset, read_dicom, read_dicom_frames
from .mat import has_hdf5_signature, read_mat
from .raster import read_raster

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "FIGSHARE_LABELS",
    "DicomStudy",
    "ImageReadError",
    "Limits",
    "ScanImage",
    "deidentify",
    "detect_format",
    "has_dicm_marker",
    "is_bare_dataset",
    "read_dicom",
    "read_dicom_frames",
    "read_image",
    "read_images",
    "read_mat",
    "read_raster",
    "to_uint8",
]

_RASTER_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")
_EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".mat": "mat",
}


def detect_format(data: bytes, filename: str = "") -> str | None:
    """'png' | 'jpeg' | 'tiff' | 'dicom' | 'mat' from magic bytes, else from the extension; None if
    neither.

    The DICOM marker comes first: a DICOM file's 128-byte preamble may hold anything, TIFF's header
    included (pydicom's MR_small.dcm and CT_small.dcm start with one).
    """
    if has_dicm_marker(data):
        return "dicom"
    if data.startswith(_RASTER_MAGIC[0]):
        return "png"
    if data.startswith(_RASTER_MAGIC[1]):
        return "jpeg"
    if data.startswith(_RASTER_MAGIC[2:]):
        return "tiff"
    if data.startswith(b"MATLAB") or has_hdf5_signature(data):
        return "mat"
    if is_bare_dataset(data):
        return "dicom"
    return _EXTENSIONS.get(PurePath(filename).suffix.lower())


def read_image(
    data: bytes,
    filename: str = "",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ScanImage:
    """The one slice a file holds; a multi-frame DICOM file is refused (``read_images`` reads it)."""
    limits = Limits(max_bytes=max_bytes, max_pixels=max_pixels)
    fmt = _format(data, filename, limits)
    if fmt == "dicom":
        return read_dicom(data, limits)
    if fmt == "mat":
        return read_mat(data, limits)
    return read_raster(data, limits)


def read_images(
    data: bytes,
    filename: str = "",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> list[ScanImage]:
    """Every slice a file holds, in order: one per frame of a multi-frame DICOM file, else one."""
    limits = Limits(max_bytes=max_bytes, max_pixels=max_pixels, max_frames=max_frames)
    if _format(data, filename, limits) == "dicom":
        return read_dicom_frames(data, limits)
    return [read_image(data, filename, max_bytes=max_bytes, max_pixels=max_pixels)]


def _format(data: bytes, filename: str, limits: Limits) -> str:
    limits.check_bytes(len(data))
    fmt = detect_format(data, filename)
    if fmt is None:
        raise ImageReadError(
            "The file is not an image we can read (PNG, JPEG, TIFF, DICOM or Figshare .mat)."
        )
    return fmt

"""What every reader returns, the one error they raise, and the limits they enforce."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import numpy as np

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
# 16.7 million: 4096x4096, 16 times a 1024x1024 slice; decoding that much takes about a second.
DEFAULT_MAX_PIXELS = 4096 * 4096
# Frames of one multi-frame DICOM file, each of which becomes a case segmented on its own.
DEFAULT_MAX_FRAMES = 200
# The decoded pixels of all the frames of one file together, in units of the per-slice limit: 4 x 16.7
# million float32 values is about 270 MB held while the frames are read.
_TOTAL_PIXELS_FACTOR = 4

# Figshare's cjdata.label codes.
FIGSHARE_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}


class ImageReadError(ValueError):
    """The upload cannot be used; ``str(error)`` is a plain-words message meant for the clinician."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES

    def check_bytes(self, size: int) -> None:
        if size == 0:
            raise ImageReadError("The file is empty.")
        if size > self.max_bytes:
            raise ImageReadError(
                f"The file is too large ({size / 1024 / 1024:.1f} MB); the limit is "
                f"{self.max_bytes / 1024 / 1024:.0f} MB."
            )

    def check_pixels(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ImageReadError(f"The image has no pixels ({width}x{height}).")
        if width * height > self.max_pixels:
            raise ImageReadError(
                f"The image is too large ({width}x{height} pixels); the limit is {self.max_pixels:,} pixels."
            )

    def check_frames(self, frames: int, width: int, height: int) -> None:
        if frames > self.max_frames:
            raise ImageReadError(
                f"The DICOM file holds {frames} frames; the limit is {self.max_frames} frames per file "
                "(each frame becomes a case that is segmented on its own). Send the series as several "
                "files or ask the administrator to raise TUMORSITE_MAX_FRAMES."
            )
        total = _TOTAL_PIXELS_FACTOR * self.max_pixels
        if frames * width * height > total:
            raise ImageReadError(
                f"The DICOM file's {frames} frames of {width}x{height} pixels are too large together; "
                f"the limit is {total:,} pixels per file. Send the series as several files."
            )


# The limits when a reader is called without any (tests, tools); uploads pass the site's own.
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class DicomStudy:
    """Where a DICOM slice belongs, read before de-identification replaces the UIDs. The UIDs are NEVER
    stored or shown, only turned into keyed pseudonyms (cases.pseudonyms); the study date is kept."""

    study_uid: str = field(repr=False)
    series_uid: str = field(repr=False)
    study_date: datetime.date | None = None
    modality: str = ""


@dataclass
class ScanImage:
    """One 2D grayscale slice as read from an upload.

    ``pixels`` is H x W (uint8, uint16, int16/int32 or float32, whatever the source held after its
    lookup tables), with row 0 at the top. ``stored_bytes`` is what should be kept instead of the upload
    (the de-identified DICOM), or None to keep the upload itself.
    """

    pixels: np.ndarray
    format: str  # png, jpeg, tiff, dicom, mat
    pixel_spacing_mm: float | None = None  # between rows
    pixel_spacing_col_mm: float | None = None  # between columns
    mask: np.ndarray | None = None  # bool H x W, a ground-truth tumour mask if the file carries one
    label: str | None = None  # tumour type if the file carries one
    patient_id: str | None = None  # a pseudonymous ID stored as is (Figshare's PID)
    tumour_border: np.ndarray | None = None  # (N, 2) x/y points, Figshare only
    metadata: dict = field(default_factory=dict)  # JSON-serialisable, never PHI
    stored_bytes: bytes | None = None
    # DICOM: the pixels after the modality LUT and before the VOI window, in the file's own units (HU for
    # CT), not inverted for MONOCHROME1: what the viewer's window/level works on (PS3.3 C.11.1, C.11.2).
    # None when ``pixels`` already are the stored values.
    stored_values: np.ndarray | None = field(default=None, repr=False)
    # DICOM's (IssuerOfPatientID, PatientID), read before de-identification: NEVER stored or shown, only
    # turned into a pseudonym (cases.pseudonyms, which needs the site's key: readers know no settings).
    dicom_patient: tuple[str, str] | None = field(default=None, repr=False)
    dicom_study: DicomStudy | None = None
    # Where the slice sits in its series: mm along the slice normal, and its InstanceNumber (the frame's
    # number in a multi-frame file); None when the file does not say.
    slice_position: float | None = None
    slice_number: int | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Display copy of any grayscale array: uint8 kept as is, anything else min-max scaled to 0..255."""
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)

"""DICOM through pydicom: one 2D grayscale slice, lookup tables applied, the header de-identified.

A file is DICOM when it has the ``DICM`` marker at byte 128, whatever its 128-byte preamble holds (the
standard lets it hold anything, a TIFF header included), or when it is a bare data set without preamble
and file meta information (as some older tools write), which starts with a group 0x0008 element.
Compressed pixel data is decoded by pydicom's plugins: GDCM (JPEG baseline, extended and lossless,
JPEG-LS), pylibjpeg-libjpeg (12-bit JPEG Extended, which pydicom's GDCM plugin refuses), pylibjpeg-openjpeg
(JPEG 2000) and pylibjpeg-rle or pydicom itself (RLE).

A multi-frame grayscale file becomes one slice per frame (``read_dicom_frames``; at most
``Limits.max_frames``), each stored as a single-frame file of its own; an enhanced file's functional
groups (PS3.3 C.7.6.16) give each frame its geometry and lookup tables.

What the reader refuses, it refuses with a message naming the reason: no pixel data (a report, a plan,
a DICOMDIR), colour, a transfer syntax no installed decoder reads, burned-in
annotations (the pixels cannot be de-identified), damaged header values or pixel data.
"""

from __future__ import annotations

import copy
import datetime
import io
import re
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from .base import DEFAULT_LIMITS, DicomStudy, ImageReadError, Limits, ScanImage
from .deidentify import DEIDENTIFICATION_METHOD, deidentify

DICM_OFFSET = 128
_GRAYSCALE = {"MONOCHROME1", "MONOCHROME2"}
_DECODABLE = "uncompressed, JPEG, JPEG-LS, JPEG 2000 or RLE"
# Explicit VRs a bare data set's first element may carry (an implicit one has a 4-byte length instead).
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
    b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
    b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip

# Non-identifying header fields worth keeping next to the scan.
_KEEP_METADATA = [
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "SliceThickness",
    "RepetitionTime",
    "EchoTime",
    "PhotometricInterpretation",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
]


def has_dicm_marker(data: bytes) -> bool:
    return data[DICM_OFFSET : DICM_OFFSET + 4] == b"DICM"


def is_bare_dataset(data: bytes) -> bool:
    """A DICOM data set written without preamble and file meta: its first element is in group 0x0008
    (little or big endian), followed by an explicit VR or an implicit length that fits in the file."""
    if len(data) < 8 or data[:2] not in (b"\x08\x00", b"\x00\x08"):
        return False
    return data[4:6] in _VRS or int.from_bytes(data[4:8], "little") <= len(data) - 8


def read_dicom(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ScanImage:
    """The one slice of a single-frame DICOM file; a multi-frame one is refused (``read_dicom_frames``)."""
    limits.check_bytes(len(data))
    with warnings.catch_warnings():
        # pydicom warns about every odd value in real files (and logs it too); the reader decides.
        warnings.simplefilter("ignore")
        return _read(data, limits, multi_frame=False)[0]


def read_dicom_frames(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[ScanImage]:
    """Every slice of a DICOM file: one, or one per frame of a multi-frame grayscale file (at most
    ``limits.max_frames``). Each frame's ``stored_bytes`` is a de-identified single-frame DICOM file of
    its own (header, the frame's geometry and its pixels uncompressed), which reads back like any slice.
    """
    limits.check_bytes(len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read(data, limits, multi_frame=True)


def _read(data: bytes, limits: Limits, *, multi_frame: bool) -> list[ScanImage]:
    ds = _parse(data)
    frames = _check_image(ds, limits, multi_frame=multi_frame)
    syntax = _transfer_syntax(ds)
    raw = _decode(ds, syntax, frames)
    patient = _patient(ds)
    study = _study(ds)
    metadata = {key: _plain(_header_value(ds, key, key)) for key in _KEEP_METADATA if key in ds}
    metadata["TransferSyntaxUID"] = str(syntax)
    metadata["deidentified"] = DEIDENTIFICATION_METHOD
    if frames == 1:
        header = _frame_header(ds, 0)
        image = _slice(header, raw, metadata, patient, study)
        deidentify(ds)
        image.stored_bytes = _to_bytes(ds)
        return [image]
    metadata["NumberOfFrames"] = frames
    deidentify(ds)
    images = []
    for index in range(frames):
        header = _frame_header(ds, index)
        image = _slice(header, raw[index], {**metadata, "FrameNumber": index + 1}, patient, study)
        image.slice_number = index + 1
        image.stored_bytes = _frame_bytes(header, raw[index], index)
        images.append(image)
    return images


def _slice(header: Dataset, raw: np.ndarray, metadata: dict, patient, study) -> ScanImage:
    """One 2D slice from its header (a frame's, functional groups flattened) and raw stored values."""
    try:
        stored_values = apply_modality_lut(raw, header)
        pixels = apply_voi_lut(stored_values, header, index=0)
    except Exception as exc:  # pydicom raises many types on a malformed lookup table
        raise ImageReadError(
            f"The DICOM file's rescale or window values are damaged and cannot be applied ({_reason(exc)})."
        ) from None
    pixels = np.asarray(pixels, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise ImageReadError("The DICOM pixel values are not all finite numbers after rescaling.")
    if _photometric(header) == "MONOCHROME1":
        # MONOCHROME1 shows low values as white; flip so every slice has bright = high.
        pixels = pixels.max() + pixels.min() - pixels

    spacing_row = spacing_col = None
    spacing = _header_value(header, "PixelSpacing", "Pixel Spacing")
    if spacing and len(spacing) == 2:
        try:
            spacing_row, spacing_col = float(spacing[0]), float(spacing[1])
        except (TypeError, ValueError):
            # Areas in mm² from a guessed spacing would be wrong; refuse rather than drop it silently.
            raise ImageReadError(
                f"The DICOM header is damaged: Pixel Spacing is {str(spacing)!r}, not two numbers."
            ) from None
    number = header.get("InstanceNumber")
    return ScanImage(
        pixels=np.ascontiguousarray(pixels),
        format="dicom",
        pixel_spacing_mm=spacing_row,
        pixel_spacing_col_mm=spacing_col,
        metadata=metadata,
        dicom_patient=patient,
        stored_values=np.asarray(stored_values, dtype=np.float32),
        dicom_study=study,
        slice_position=_slice_position(header),
        slice_number=_int_or_none(number),
    )


# Functional groups of an enhanced multi-frame image (PS3.3 C.7.6.16) whose values a single-frame image
# holds at the top level: flattened so the same code reads both.
_FUNCTIONAL_GROUPS = {
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness"),
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}
# Multi-frame attributes that describe all the frames: a frame stored on its own has NumberOfFrames 1.
_ALL_FRAMES = ("FrameIncrementPointer", "FrameTime", "FrameTimeVector", "GridFrameOffsetVector")


def _frame_header(ds: Dataset, index: int) -> Dataset:
    """The header of frame ``index`` (no pixel data): the file's own, with the shared and the frame's
    functional groups copied to the top level, only that frame's per-frame item kept, and an RT Dose's
    grid offset (PS3.3 C.8.8.3.2) moved into its ImagePositionPatient."""
    header = Dataset()
    for elem in ds:
        if elem.keyword not in ("PixelData", "PerFrameFunctionalGroupsSequence"):
            header.add(copy.deepcopy(elem))
    header.file_meta = copy.deepcopy(ds.file_meta)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    item = per_frame[index] if index < len(per_frame) else None
    for group in ((ds.get("SharedFunctionalGroupsSequence") or [None])[0], item):
        for keyword, keys in _FUNCTIONAL_GROUPS.items():
            if group is None or not group.get(keyword):
                continue
            for key in keys:
                if key in group[keyword][0]:
                    header.add(copy.deepcopy(group[keyword][0][key]))
    if item is not None:
        header.PerFrameFunctionalGroupsSequence = [copy.deepcopy(item)]
    offsets = ds.get("GridFrameOffsetVector")
    normal = _normal(header)
    if offsets and normal is not None and "ImagePositionPatient" in header and index < len(offsets):
        origin = np.asarray([float(v) for v in header.ImagePositionPatient])
        position = origin + float(offsets[index]) * normal
        header.ImagePositionPatient = [round(float(v), 6) for v in position]
    if "NumberOfFrames" in header:
        header.NumberOfFrames = 1
        for keyword in _ALL_FRAMES:
            if keyword in header:
                delattr(header, keyword)
    return header


def _frame_bytes(header: Dataset, raw: np.ndarray, index: int) -> bytes:
    """A de-identified single-frame DICOM file of one frame: its header, its stored values uncompressed
    (Explicit VR Little Endian) and a SOP Instance UID of its own, made from the file's and the frame's
    number so the same file sent again gives the same bytes (and is found as a duplicate)."""
    frame = copy.deepcopy(header)
    if "SOPInstanceUID" in frame:
        frame.SOPInstanceUID = generate_uid(entropy_srcs=[str(frame.SOPInstanceUID), "frame", str(index)])
    frame.InstanceNumber = index + 1
    bits = int(frame.get("BitsAllocated") or 16)
    frame.PixelData = raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()
    frame["PixelData"].VR = "OB" if bits <= 8 else "OW"
    frame.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("LossyImageCompressionRatio",):  # of the file's encoding, not of these bytes
        frame.pop(keyword, None)
    return _to_bytes(frame)


def _normal(header: Dataset) -> np.ndarray | None:
    """The slice normal: the cross product of ImageOrientationPatient's row and column directions."""
    try:
        orientation = [float(v) for v in header.get("ImageOrientationPatient") or []]
    except (TypeError, ValueError):
        return None
    if len(orientation) != 6:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0 else None


def _slice_position(header: Dataset) -> float | None:
    """Millimetres along the slice normal (what orders the slices of a series), None if not given."""
    normal = _normal(header)
    try:
        position = [float(v) for v in header.get("ImagePositionPatient") or []]
    except (TypeError, ValueError):
        return None
    if normal is None or len(position) != 3:
        return None
    return round(float(np.dot(position, normal)), 4)


def _study(ds: Dataset) -> DicomStudy | None:
    """The file's study and series, read before de-identification replaces their UIDs; None without a
    StudyInstanceUID (the file then makes a study of its own)."""
    try:
        study_uid = str(ds.get("StudyInstanceUID") or "").strip()
        series_uid = str(ds.get("SeriesInstanceUID") or "").strip()
        modality = str(ds.get("Modality") or "").strip().upper()
        study_date = _date(str(ds.get("StudyDate") or ""))
    except (ValueError, TypeError):  # a damaged value groups nothing; the image is still usable
        return None
    if not study_uid:
        return None
    return DicomStudy(
        study_uid=study_uid,
        series_uid=series_uid,
        study_date=study_date,
        modality=modality if _MODALITY.match(modality) else "",
    )


_MODALITY = re.compile(r"^[A-Z0-9_ ]{1,16}$")  # a Code String (PS3.5 table 6.2-1)


def _date(value: str) -> datetime.date | None:
    """A DICOM DA (YYYYMMDD; the old YYYY.MM.DD too) as a date, None when empty or not a real date."""
    digits = value.strip().replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


# PatientIDs that anonymising tools write instead of the real one: they name nobody, so they link nothing
# (else every such upload would become one patient, whose history mixes strangers).
_PLACEHOLDER_IDS = {
    "0", "-", "na", "n/a", "none", "null", "unknown", "anon", "anonymous", "anonymized", "anonymised",
    "removed", "deidentified", "de-identified", "patient", "patientid", "test",
}  # fmt: skip


def _patient(ds: Dataset) -> tuple[str, str] | None:
    """(IssuerOfPatientID or "", PatientID) to link the upload to its patient; None without a real
    PatientID. De-identification empties both in the stored copy; the caller keeps only their pseudonym."""
    try:
        patient_id = str(ds.get("PatientID") or "").strip()
        issuer = str(ds.get("IssuerOfPatientID") or "").strip()
    except (ValueError, TypeError):  # a damaged value links nothing; the image is still usable
        return None
    if not patient_id or patient_id.lower() in _PLACEHOLDER_IDS:
        return None
    return (issuer, patient_id)


def _parse(data: bytes) -> Dataset:
    marked = has_dicm_marker(data)
    try:
        # force=True reads bare data sets (no DICM marker) too.
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        # Reading is lazy: touch every top-level element now, so a damaged one fails here.
        for _ in ds:
            pass
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if not marked and not is_bare_dataset(data):
            raise _not_dicom() from None
        raise ImageReadError(
            f"The DICOM file is truncated or damaged and cannot be read ({_reason(exc)})."
        ) from None
    if not marked and not any(keyword in ds for keyword in ("SOPClassUID", "Modality", "PixelData", "Rows")):
        raise _not_dicom()
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ImageReadError(
                "The DICOM file holds floating-point pixel data (such as a parametric map), "
                "which is not supported; send the grayscale image it was made from."
            )
        raise ImageReadError(
            f"The DICOM file{_kind(ds)} has no image in it (no pixel data); "
            "it may be a report, a plan, a directory (DICOMDIR) or a truncated file."
        )
    return ds


def _check_image(ds: Dataset, limits: Limits, *, multi_frame: bool) -> int:
    """Refuse what is not grayscale 2D slices; the number of frames."""
    frames = max(_header_int(ds, "NumberOfFrames", "Number of Frames", default=1), 1)
    rows = _header_int(ds, "Rows", "Rows", default=0)
    cols = _header_int(ds, "Columns", "Columns", default=0)
    if rows == 0 or cols == 0:
        raise ImageReadError(
            "The DICOM file has pixel data but no image size (Rows and Columns are missing or zero), "
            "so the image cannot be read."
        )
    limits.check_pixels(cols, rows)
    samples = _header_int(ds, "SamplesPerPixel", "Samples per Pixel", default=1)
    photometric = _photometric(ds)
    if samples != 1 or (photometric and photometric not in _GRAYSCALE):
        raise ImageReadError(
            f"The DICOM image is in colour ({photometric or f'{samples} samples per pixel'}); "
            "TumorSite reads grayscale MRI slices only."
        )
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise ImageReadError(
            "The DICOM file says the patient's details are burned into the image pixels; "
            "it cannot be de-identified, so it is not stored."
        )
    if frames > 1 and not multi_frame:
        raise ImageReadError(
            f"The DICOM file holds {frames} frames (a multi-frame image); this reads single slices: "
            "upload it (the upload page or DICOMweb) to make a study of one case per frame."
        )
    if frames > 1:
        limits.check_frames(frames, cols, rows)
        if _header_int(ds, "BitsAllocated", "Bits Allocated", default=16) not in (8, 16, 32):
            raise ImageReadError(
                "The multi-frame DICOM file packs its pixels in single bits; only 8, 16 or 32 bits per "
                "pixel can be split into slices."
            )
    return frames


def _transfer_syntax(ds: Dataset) -> UID:
    """The file's transfer syntax; for a bare data set, the encoding pydicom found, recorded in a new
    file meta so the pixels can be decoded and the de-identified copy is a proper DICOM file."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        if implicit is None or ds["PixelData"].is_undefined_length:
            raise ImageReadError(
                "The DICOM file does not say how its pixel data is encoded (no transfer syntax) "
                "and it cannot be inferred; export it again as a standard DICOM file."
            )
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    syntax = UID(meta.TransferSyntaxUID)
    name = syntax.name if syntax.name != str(syntax) else f"transfer syntax {syntax}"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageReadError(
            f"The DICOM pixel data is encoded as {name}, which TumorSite cannot decode; "
            f"export the image {_DECODABLE}."
        ) from None
    if not decoder.is_available:
        raise ImageReadError(
            f"No decoder for {name} is installed on this server; ask its administrator to install "
            "the project's dependencies (python-gdcm, pylibjpeg and its plugins)."
        )
    return syntax


def _decode(ds: Dataset, syntax: UID, frames: int) -> np.ndarray:
    try:
        raw = ds.pixel_array
    except Exception as exc:  # decoders raise many types: short buffers, codec errors...
        raise ImageReadError(
            f"The DICOM pixel data ({syntax.name}) cannot be decoded: it is truncated or damaged, "
            f"or uses a variant the decoders do not support ({_reason(exc)})."
        ) from None
    wanted = 2 if frames == 1 else 3
    if raw.ndim != wanted or (frames > 1 and raw.shape[0] != frames):
        raise ImageReadError(
            f"The DICOM pixel data has shape {raw.shape}; "
            + ("a single 2D slice is needed." if frames == 1 else f"{frames} 2D frames were declared.")
        )
    return raw


def _header_value(ds: Dataset, keyword: str, label: str):
    try:
        return ds.get(keyword)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ImageReadError(
            f"The DICOM header is damaged: {label} cannot be read ({_reason(exc)})."
        ) from None


def _header_int(ds: Dataset, keyword: str, label: str, *, default: int) -> int:
    value = _header_value(ds, keyword, label)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ImageReadError(
            f"The DICOM header is damaged: {label} is {str(value)!r}, not a whole number."
        ) from None


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "") or "").strip().upper()


def _kind(ds: Dataset) -> str:
    """' (Basic Text SR Storage)' from the SOP class, the file meta's for a DICOMDIR; '' if neither says."""
    meta = getattr(ds, "file_meta", None)
    sop_class = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    if not sop_class:
        return ""
    name = UID(str(sop_class)).name
    return f" ({name})" if name != str(sop_class) else ""


def _reason(exc: Exception, limit: int = 200) -> str:
    """The exception's words on one line, short enough for a message. pydicom's "Unable to decode as
    exceptions were raised by all available plugins:" heads one line per plugin: those lines are kept."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    text = "; ".join(lines) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _not_dicom() -> ImageReadError:
    return ImageReadError(
        "The file is not an image we can read (PNG, JPEG, TIFF, DICOM or Figshare .mat): it has no "
        "DICOM marker ('DICM' at byte 128) and does not start like a DICOM data set."
    )


def _to_bytes(ds: Dataset) -> bytes:
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format="SOPClassUID" in ds and "SOPInstanceUID" in ds)
    return buffer.getvalue()


def _plain(value):
    """JSON-friendly copy of a header value (DS/IS values are float/int subclasses that print as strings)."""
    if isinstance(value, pydicom.multival.MultiValue):
        return [_plain(v) for v in value]
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)

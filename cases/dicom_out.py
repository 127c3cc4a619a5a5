"""What a DICOM case exports beside its PNG: the mask as a DICOM Segmentation, and the slice's geometry for
the NIfTI mask. No Django here: the callers pass the stored (already de-identified) DICOM header.

The Segmentation (DICOM PS3.3 A.51, Segmentation IOD; built with highdicom) is BINARY with one segment,
"Tumour": property category "Morphologically Abnormal Structure" (SCT 49755003, CID 7150), property type
"Neoplasm" (SCT 108369006, CID 7151); its algorithm type is AUTOMATIC with the model version named in the
Algorithm Identification (PS3.3 C.8.20.2) when a model made the mask, MANUAL when a clinician drew it. It
references the stored source image (its SOP Instance UID, series and frame of reference) and copies the
patient and study modules from it, so it names the patient no more than the de-identified source does; its
own dates are the source's study date, or a dummy one when the source keeps none (PS3.15 E.1-1 action D):
the day an outline was drawn follows the scan by days and would give the study date away.
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

TUMOUR_LABEL = "Tumour"
TUMOUR_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure  # SCT 49755003, CID 7150
TUMOUR_TYPE = codes.SCT.Neoplasm  # SCT 108369006, CID 7151
# The dummy date and time of PS3.15's action D, for a SEG whose source keeps no study date.
DUMMY_DATE, DUMMY_TIME = "19000101", "000000"
# The SEG series' number: far from the scanner's own series numbers (a viewer lists series by it).
SEG_SERIES_NUMBER = 9000
# Type 2 attributes of the patient and study modules (PS3.3 C.7.1.1, C.7.2.1) that the SEG copies from its
# source: a source without them gets them empty on a copy, as the standard wants them present.
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


class DicomExportError(ValueError):
    """The mask cannot be exported as DICOM; the message says why in plain words."""


@dataclass(frozen=True)
class MaskOrigin:
    """Where a mask came from, as the Segmentation says it.

    ``key`` is unique among a case's masks (``"v3"``, ``"run17"``): the SEG's instance UID derives from it
    and the source's, so one mask always exports with one UID and a PACS keeps it once.
    """

    key: str
    description: str  # Content Description (LO: 64 characters at most)
    model_name: str = ""  # the model version that made it; empty for a clinician's outline (MANUAL)
    model_version: str = ""  # e.g. its weights' SHA-256 prefix (LO: 64 characters at most)
    model_parameters: tuple[tuple[str, str], ...] = ()  # Algorithm Parameters, e.g. (("weights", ...),)
    instance_number: int = 1

    @property
    def automatic(self) -> bool:
        return bool(self.model_name)


@dataclass(frozen=True)
class SliceGeometry:
    """Where the slice's pixels are in millimetres: what the NIfTI mask's header and affine say.

    ``row_mm`` is the distance between rows (DICOM Pixel Spacing[0]), ``col_mm`` between columns
    (Pixel Spacing[1]); ``thickness_from`` names the header field the thickness came from, "" when it is
    the 1 mm assumed. ``orientation`` (Image Orientation (Patient), 6 direction cosines) and ``position``
    (Image Position (Patient) of the first pixel's centre) are in DICOM's LPS patient coordinates.
    """

    row_mm: float | None = None
    col_mm: float | None = None
    thickness_mm: float = 1.0
    thickness_from: str = ""
    orientation: tuple[float, ...] | None = None
    position: tuple[float, ...] | None = None


def slice_geometry(header: Dataset | None, *, row_mm: float | None, col_mm: float | None) -> SliceGeometry:
    """The slice's geometry from its scan's pixel spacing and, for DICOM, its stored header: the slice
    thickness (Slice Thickness, else Spacing Between Slices, else 1 mm assumed), orientation and position.
    A damaged or missing value is left out rather than guessed."""
    if header is None:
        return SliceGeometry(row_mm=row_mm, col_mm=col_mm)
    thickness, source = 1.0, ""
    for keyword in ("SliceThickness", "SpacingBetweenSlices"):
        values = _numbers(header, keyword, 1)
        if values and values[0] > 0:
            thickness, source = values[0], keyword
            break
    return SliceGeometry(
        row_mm=row_mm,
        col_mm=col_mm,
        thickness_mm=thickness,
        thickness_from=source,
        orientation=_numbers(header, "ImageOrientationPatient", 6),
        position=_numbers(header, "ImagePositionPatient", 3),
    )


def _numbers(header: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    try:
        value = header.get(keyword)
        values = [value] if count == 1 and not isinstance(value, (list, tuple)) else list(value or [])
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        return None
    return numbers if len(numbers) == count and all(math.isfinite(v) for v in numbers) else None


def nifti_affine(geometry: SliceGeometry) -> np.ndarray | None:
    """The NIfTI affine (RAS+, voxel index (i, j, k) = (column, row, slice)) of a slice whose DICOM header
    places it: column i runs along the first direction cosine triple of Image Orientation (Patient), row j
    along the second, the slice along their cross product; DICOM's LPS becomes NIfTI's RAS by negating x and
    y (nibabel's "DICOM orientation" notes). None when the header does not place the slice."""
    if geometry.orientation is None or geometry.position is None or not geometry.row_mm:
        return None
    along_row, along_column = np.array(geometry.orientation[:3]), np.array(geometry.orientation[3:])
    normal = np.cross(along_row, along_column)
    lps = np.eye(4)
    lps[:3, 0] = along_row * (geometry.col_mm or geometry.row_mm)
    lps[:3, 1] = along_column * geometry.row_mm
    lps[:3, 2] = normal * geometry.thickness_mm
    lps[:3, 3] = geometry.position
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def mask_segmentation_bytes(*, source: Dataset, mask: np.ndarray, origin: MaskOrigin) -> bytes:
    """The mask as a DICOM Segmentation (Part 10 file bytes) of the single-frame ``source`` image.

    ``source`` is the stored, de-identified DICOM (its header suffices; pixel data is not needed); ``mask``
    a bool (rows, columns) array at the source's size. Raises DicomExportError when the source cannot be
    referenced (no SOP Instance UID, several frames, a size other than the mask's, a frame of reference its
    IOD requires but lacks).
    """
    mask = np.asarray(mask) > 0
    source = _checked_source(source, mask.shape)
    algorithm = None
    if origin.automatic:
        algorithm = hd.AlgorithmIdentificationSequence(
            name=origin.model_name[:64],
            family=codes.DCM.ArtificialIntelligence,
            version=(origin.model_version or "unversioned")[:64],
            source="TumorSite",
            parameters=dict(origin.model_parameters) or None,
        )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=TUMOUR_LABEL,
        segmented_property_category=TUMOUR_CATEGORY,
        segmented_property_type=TUMOUR_TYPE,
        algorithm_type=(
            hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
            if origin.automatic
            else hd.seg.SegmentAlgorithmTypeValues.MANUAL
        ),
        algorithm_identification=algorithm,
    )
    series_of = origin.model_name or "clinician"
    try:
        seg = hd.seg.Segmentation(
            source_images=[source],
            pixel_array=mask,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment],
            series_instance_uid=_uid("series", source.SeriesInstanceUID, series_of),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=_uid("instance", source.SOPInstanceUID, origin.key),
            instance_number=origin.instance_number,
            manufacturer="TumorSite",
            manufacturer_model_name="TumorSite",
            software_versions=_software_version(),
            device_serial_number="0",
            content_label="TUMOUR",
            content_description=origin.description[:64],
            omit_empty_frames=False,  # one frame: an empty mask is still an answer
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        if "NumberOfFrames" in source and "SharedFunctionalGroupsSequence" not in source:
            # A frame of a classic multi-frame image (RT Dose, NM...): highdicom wants functional groups.
            raise DicomExportError(
                f"The scan is one frame of a multi-frame file ({source.SOPClassUID.name}) without functional "
                "groups, which a DICOM Segmentation cannot reference; the mask is still available as PNG or "
                "NIfTI."
            ) from exc
        raise DicomExportError(
            f"The DICOM Segmentation could not be made from this scan's DICOM header ({exc}); "
            "the mask is still available as PNG or NIfTI."
        ) from exc
    _dates_of_source(seg, source)
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PlaneOrientationSequence" not in shared and "PatientOrientation" not in seg:
        # General Image: Patient Orientation is type 2C when no plane orientation places the image.
        seg.PatientOrientation = source.get("PatientOrientation") or None
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return buffer.getvalue()


def _checked_source(source: Dataset, shape: tuple[int, ...]) -> Dataset:
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not source.get(keyword):
            raise DicomExportError(
                f"The scan's DICOM header has no {keyword}, so a DICOM Segmentation cannot reference it."
            )
    frames = int(source.get("NumberOfFrames") or 1)
    if frames > 1:
        raise DicomExportError(
            f"The scan is a multi-frame DICOM ({frames} frames); its masks are exported as PNG or NIfTI only."
        )
    size = (int(source.get("Rows") or 0), int(source.get("Columns") or 0))
    if size != tuple(shape):
        raise DicomExportError(f"The mask is {shape[1]}x{shape[0]}; the DICOM image is {size[1]}x{size[0]}.")
    source = copy.deepcopy(source)
    for keyword in _TYPE2_COPIED:
        if keyword not in source:
            setattr(source, keyword, None)
    # The Pixel Measures macro wants a slice thickness (PS3.3 C.7.6.16.2.1): the NIfTI's rule, without the
    # 1 mm guess (a source with neither gets none, which dciodvfy reports).
    if not _numbers(source, "SliceThickness", 1) and _numbers(source, "SpacingBetweenSlices", 1):
        source.SliceThickness = source.SpacingBetweenSlices
    return source


def _dates_of_source(seg: Dataset, source: Dataset) -> None:
    """The SEG's own dates: the source's study date and time when it keeps them, else PS3.15's dummy;
    the optional ones that would say when the export ran (instance creation, contribution) are left out."""
    study_date = str(source.get("StudyDate") or "")
    seg.ContentDate = study_date or DUMMY_DATE
    seg.ContentTime = (str(source.get("StudyTime") or "") or DUMMY_TIME) if study_date else DUMMY_TIME
    for keyword in ("InstanceCreationDate", "InstanceCreationTime", "SeriesDate", "SeriesTime"):
        if keyword in seg:
            delattr(seg, keyword)
    for equipment in seg.get("ContributingEquipmentSequence") or []:  # highdicom's own entry: when it ran
        if "ContributionDateTime" in equipment:
            del equipment.ContributionDateTime
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence"):
        if keyword in source:
            setattr(seg, keyword, copy.deepcopy(source.get(keyword)))


def _uid(kind: str, source_uid: str, key: str) -> str:
    """A UID derived from the source's and the key: the same mask exports with the same UID every time."""
    return generate_uid(entropy_srcs=["tumorsite-seg", kind, str(source_uid), key])


def _software_version() -> str:
    try:
        return f"TumorSite {package_version('tumorsite')}"
    except PackageNotFoundError:  # a checkout that was not installed
        return "TumorSite"

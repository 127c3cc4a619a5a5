"""Writes to the clinical record: creating cases from uploads and from dataset imports, and adding
versions of a case's ground-truth outline (never deleting one)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Max
from django.utils import timezone
from PIL import Image

from audit.services import audit_record
from cases.models import (
    Case,
    MaskSource,
    MaskVersion,
    Patient,
    Scan,
    ScanFormat,
    Study,
    TumourType,
    TypeSource,
)
from cases.pseudonyms import patient_pseudonym, series_pseudonym, study_pseudonym
from cases.readers import ImageReadError, ScanImage, read_image, read_images
from cases.rendering import mask_png_bytes, pixels_png_bytes
from cases.storage import atomic_with_files, delete_on_rollback, file_save, files_delete


@dataclass
class CasePrepared:
    """A case whose files are in storage but whose rows are not saved yet (see cases_save)."""

    scan: Scan
    case: Case
    stored_names: list[str]
    # The imported ground truth as the case's version 1 (unsaved), when the case comes with a mask.
    mask_version: MaskVersion | None = None


@dataclass(frozen=True)
class CaseUpload:
    """An upload read and checked, before anything is written (``case_upload_read``).

    ``stored`` is what the record keeps (the de-identified DICOM, a PNG for .mat, else the upload itself),
    ``sha256`` its digest: the key that finds the same file uploaded again.
    """

    image: ScanImage
    data: bytes
    filename: str
    stored: bytes
    extension: str
    sha256: str


class StudyOfAnotherPatient(ValueError):
    """The file's study is already recorded for another patient than the one the upload names."""

    def __init__(self, study: Study):
        self.study = study
        super().__init__(
            f"This file belongs to a study already recorded for patient {study.patient.identifier} "
            "(the same StudyInstanceUID), but the upload names another patient. Check the file; "
            f"to add it to that study, leave the patient field empty or type {study.patient.identifier}."
        )


class DuplicateUpload(Exception):
    """The same file is already a case's scan; ``force=True`` records it again anyway."""

    def __init__(self, case: Case):
        self.case = case
        super().__init__(
            f"This file was already uploaded as case {case.pk}; "
            "it was not stored again. Upload it anyway to record a second case."
        )


def case_upload_read(*, image_file: IO[bytes] | bytes, filename: str) -> CaseUpload:
    """Read, check and decode an upload; no row and no file is written.

    The slow part of an upload (decoding, de-identifying, hashing) runs here, so that callers can keep
    it out of their write transaction (the embedded mode's SQLite has one write lock for everybody).
    Raises ImageReadError with a message for the uploader.
    """
    data = _read_upload(image_file)
    image = read_image(
        data,
        filename,
        max_bytes=settings.TUMORSITE_MAX_UPLOAD_MB * 1024 * 1024,
        max_pixels=settings.TUMORSITE_MAX_PIXELS,
    )
    return _case_upload(image, data, filename)


def case_uploads_read(*, image_file: IO[bytes] | bytes, filename: str) -> list[CaseUpload]:
    """``case_upload_read`` for a file that may hold several slices: one upload per frame of a
    multi-frame DICOM file (at most ``TUMORSITE_MAX_FRAMES``), in frame order; else one."""
    data = _read_upload(image_file)
    images = read_images(
        data,
        filename,
        max_bytes=settings.TUMORSITE_MAX_UPLOAD_MB * 1024 * 1024,
        max_pixels=settings.TUMORSITE_MAX_PIXELS,
        max_frames=settings.TUMORSITE_MAX_FRAMES,
    )
    return [_case_upload(image, data, filename) for image in images]


def _case_upload(image: ScanImage, data: bytes, filename: str) -> CaseUpload:
    stored, extension = _stored_bytes(image, data)
    return CaseUpload(
        image=image,
        data=data,
        filename=filename,
        stored=stored,
        extension=extension,
        sha256=hashlib.sha256(stored).hexdigest(),
    )


def case_create(
    *,
    image_file: IO[bytes] | bytes | None = None,
    filename: str = "",
    upload: CaseUpload | None = None,
    user=None,
    patient_identifier: str | None = None,
    tumour_type: str | None = None,
    source_ref: str | None = None,
    force: bool = False,
) -> Case:
    """Read and validate an uploaded slice and record it as a new case (``cases_create``'s first case
    when the file is a multi-frame DICOM: every frame becomes a case).

    Give either ``image_file`` and ``filename`` or an ``upload`` already read by ``case_upload_read``
    (so that a caller who wraps this in its own transaction reads the file before taking the lock).
    """
    uploads = [upload] if upload is not None else case_uploads_read(image_file=image_file, filename=filename)
    return cases_create(
        uploads=uploads,
        user=user,
        patient_identifier=patient_identifier,
        tumour_type=tumour_type,
        source_ref=source_ref,
        force=force,
    )[0]


def cases_create(
    *,
    uploads: list[CaseUpload],
    user=None,
    patient_identifier: str | None = None,
    tumour_type: str | None = None,
    source_ref: str | None = None,
    force: bool = False,
) -> list[Case]:
    """Record the slices of one uploaded file (``case_uploads_read``) as cases of one study, in order.

    Raises ImageReadError (nothing is stored) when the file cannot be used, DuplicateUpload (nothing is
    stored) when one of its slices is already a case's scan, unless ``force``, and StudyOfAnotherPatient
    when its DICOM study is recorded for another patient than the one named. A DICOM file joins the study
    of its StudyInstanceUID (through its keyed pseudonym) if one is recorded, else starts it; any other
    file makes a study of its own. DICOM is stored de-identified; a Figshare .mat file is stored as a
    PNG together with its ground-truth mask and label. ``tumour_type`` given here counts as the
    clinician's. Each case is one ``case.uploaded`` entry in the audit trail (the bulk imports, which an
    operator runs from a shell, write none: see docs/operations.md, "Audit trail").
    """
    if not uploads:
        raise ValueError("cases_create needs at least one upload")
    if tumour_type is not None and tumour_type not in TumourType.values:
        raise ValueError(f"Unknown tumour type {tumour_type!r}; expected one of {TumourType.values}")
    if source_ref is not None and len(uploads) > 1:
        raise ValueError("a source_ref names one case; this file holds several slices")
    first = uploads[0].image
    identifier = patient_identifier or _image_patient(first)
    cases = []
    # Short: the rows, the audit entries and small file writes (deleted again on any failure).
    with atomic_with_files():
        if not force:
            existing = (
                Case.objects.filter(scan__sha256__in=[u.sha256 for u in uploads]).order_by("pk").first()
            )
            if existing is not None:
                raise DuplicateUpload(existing)
        study = study_for_upload(image=first, patient_identifier=identifier)
        for upload in uploads:
            prepared = case_prepare(
                image=upload.image,
                data=upload.data,
                filename=upload.filename,
                patient=study.patient,
                study=study,
                user=user,
                tumour_type=tumour_type,
                tumour_type_source=TypeSource.CLINICIAN if tumour_type else None,
                source_ref=source_ref,
                stored=(upload.stored, upload.extension),
            )
            prepared.scan.save()
            prepared.case.scan = prepared.scan
            prepared.case.save()
            _first_mask_version_save(prepared)
            audit_record(
                event="case.uploaded",
                obj=prepared.case,
                user=user,
                detail={"format": prepared.scan.format, "tumour_type": tumour_type, "forced": force},
            )
            cases.append(prepared.case)
    return cases


def study_for_upload(*, image: ScanImage, patient_identifier: str | None) -> Study:
    """The study an upload's slices join: the recorded one of its DICOM StudyInstanceUID's pseudonym, or
    a new one (for a non-DICOM file, always new). Call inside a transaction.

    A recorded study keeps its patient: an upload that names none joins it, one that names another is
    refused (StudyOfAnotherPatient). A new study's patient is the one named, else a new anonymous one.
    """
    info = image.dicom_study
    key = study_pseudonym(info.study_uid) if info is not None else None
    if key is not None:
        study = Study.objects.select_related("patient").filter(uid_pseudonym=key).first()
        if study is not None:
            if patient_identifier and patient_identifier != study.patient.identifier:
                raise StudyOfAnotherPatient(study)
            return study
    identifier = patient_identifier or _new_patient_identifier()
    patient = patients_get_or_create(identifiers=[identifier])[identifier]
    if key is None:
        return Study.objects.create(patient=patient)
    study, created = Study.objects.get_or_create(
        uid_pseudonym=key,
        defaults={"patient": patient, "study_date": info.study_date, "modality": info.modality},
    )
    if not created and study.patient_id != patient.pk:  # another upload of the study won the race
        raise StudyOfAnotherPatient(study)
    return study


def case_prepare(
    *,
    image: ScanImage,
    data: bytes,
    filename: str,
    patient: Patient,
    study: Study | None = None,
    user=None,
    tumour_type: str | None = None,
    tumour_type_source: str | None = None,
    source_ref: str | None = None,
    mask: np.ndarray | None = None,
    stored: tuple[bytes, str] | None = None,
) -> CasePrepared:
    """Store the files of one case and build its (unsaved) Scan and Case.

    What is stored: the de-identified DICOM for DICOM, a PNG for .mat, the upload itself otherwise
    (``stored``: those bytes and their extension when the caller has them already). The stored names are
    generated (``scans/YYYY/MM/<uuid>.<ext>``), never taken from the upload's name, which is kept
    cleaned up as ``original_filename`` only, and not even that for DICOM (``scan_display_name``).
    A ground-truth mask comes from ``mask`` or from the file itself (.mat); its label likewise.
    Without a ``study``, ``cases_save`` makes the case a study of its own.
    """
    stored_bytes, ext = stored if stored is not None else _stored_bytes(image, data)
    stem = uuid.uuid4().hex
    now = timezone.now()
    names = []
    try:
        scan_name = file_save(f"scans/{now:%Y/%m}/{stem}{ext}", ContentFile(stored_bytes))
        names.append(scan_name)
        mask = image.mask if mask is None else mask
        mask_name = None
        if mask is not None:
            if mask.shape != image.pixels.shape:
                raise ImageReadError(
                    f"The mask is {mask.shape[1]}x{mask.shape[0]} "
                    f"but the image is {image.width}x{image.height}."
                )
            mask_name = file_save(f"masks/{now:%Y/%m}/{stem}_mask.png", ContentFile(mask_png_bytes(mask)))
            names.append(mask_name)
    except BaseException:
        files_delete(names)  # outside a transaction (the imports) nothing else would
        raise

    if tumour_type is None and image.label is not None:
        tumour_type, tumour_type_source = image.label, TypeSource.IMPORTED
    scan = Scan(
        file=scan_name,
        original_filename=scan_display_name(image=image, filename=filename, stored=stored_bytes),
        format=image.format,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(stored_bytes).hexdigest(),
        pixel_spacing_mm=image.pixel_spacing_mm,
        pixel_spacing_col_mm=image.pixel_spacing_col_mm,
        uploaded_by=user,
    )
    case = Case(
        patient=patient,
        study=study,
        slice_position=image.slice_position,
        slice_number=image.slice_number,
        series_pseudonym=(
            series_pseudonym(image.dicom_study.series_uid)
            if image.dicom_study is not None and image.dicom_study.series_uid
            else ""
        ),
        source_ref=source_ref,
        tumour_type=tumour_type,
        tumour_type_source=tumour_type_source if tumour_type else None,
        ground_truth_mask=mask_name,
        mask_source=MaskSource.IMPORTED if mask_name else None,
        mask_updated_at=now if mask_name else None,
        created_by=user,
    )
    version = None
    if mask_name:
        version = MaskVersion(
            number=1,
            file=mask_name,
            source=MaskSource.IMPORTED,
            area_px=int(np.count_nonzero(mask)),
            created_by=user,
            created_at=now,
        )
    return CasePrepared(scan=scan, case=case, stored_names=names, mask_version=version)


def cases_save(prepared: list[CasePrepared]) -> list[Case]:
    """Save many prepared cases in bulk (a study of its own for each case without one, scans, cases,
    their first mask versions, then one update that points the cases at those versions); unless that
    commits, their stored files are removed."""
    if not prepared:
        return []
    with atomic_with_files():
        delete_on_rollback(*(name for p in prepared for name in p.stored_names))
        alone = [p for p in prepared if p.case.study is None]
        studies = Study.objects.bulk_create([Study(patient=p.case.patient) for p in alone])
        for item, study in zip(alone, studies, strict=True):
            item.case.study = study
        scans = Scan.objects.bulk_create([p.scan for p in prepared])
        for item, scan in zip(prepared, scans, strict=True):
            item.case.scan = scan
        cases = Case.objects.bulk_create([p.case for p in prepared])
        with_mask = [p for p in prepared if p.mask_version is not None]
        for item in with_mask:
            item.mask_version.case = item.case
        versions = MaskVersion.objects.bulk_create([p.mask_version for p in with_mask])
        for item, version in zip(with_mask, versions, strict=True):
            item.case.mask_version = version
        if with_mask:
            Case.objects.bulk_update([p.case for p in with_mask], ["mask_version"])
        return cases


def _first_mask_version_save(prepared: CasePrepared) -> None:
    """Save a just-saved case's imported mask as its version 1 (``cases_save`` does it in bulk)."""
    if prepared.mask_version is None:
        return
    prepared.mask_version.case = prepared.case
    prepared.mask_version.save()
    prepared.case.mask_version = prepared.mask_version
    prepared.case.save(update_fields=["mask_version"])


def patients_get_or_create(*, identifiers: Iterable[str]) -> dict[str, Patient]:
    """Patients by identifier, creating the missing ones in one insert."""
    wanted = set(identifiers)
    found = {p.identifier: p for p in Patient.objects.filter(identifier__in=wanted)}
    missing = wanted - found.keys()
    if missing:
        Patient.objects.bulk_create([Patient(identifier=i) for i in sorted(missing)], ignore_conflicts=True)
        found.update({p.identifier: p for p in Patient.objects.filter(identifier__in=missing)})
    return found


def case_ground_truth_set(*, case: Case, mask: np.ndarray, user) -> MaskVersion:
    """Add a clinician's corrected tumour outline (bool or 0/255 array at the scan's size) as the case's
    next mask version, which becomes the one in use. Earlier versions and their files stay.

    Call inside ``cases.storage.atomic_with_files`` (the new file is deleted unless it commits);
    ``case`` should be locked (``select_for_update``) so two corrections cannot take the same number
    (the unique constraint refuses it if they do).
    """
    mask = np.asarray(mask)
    if mask.shape != (case.scan.height, case.scan.width):
        raise ValueError(f"mask is {mask.shape}, the scan is {(case.scan.height, case.scan.width)}")
    name = file_save(
        f"masks/{timezone.now():%Y/%m}/case{case.pk}_corrected.png", ContentFile(mask_png_bytes(mask > 0))
    )
    return mask_version_add(
        case=case, file_name=name, source=MaskSource.CORRECTED, user=user, area_px=int((mask > 0).sum())
    )


def mask_version_add(
    *,
    case: Case,
    file_name: str,
    source: str,
    user,
    area_px: int | None,
    restored_from: MaskVersion | None = None,
) -> MaskVersion:
    """Record ``file_name`` (already stored) as the case's next mask version and put it in use: the
    case's ``mask_version``, ``ground_truth_mask`` (which every reader uses), source, who and when.

    Call inside a transaction with ``case`` locked. A case whose ground truth predates versions (it has
    a mask but no ``mask_version``) first gets that mask recorded as version 1, so it is kept too.
    """
    mask_version_backfill(case=case)
    last = case.mask_versions.aggregate(last=Max("number"))["last"] or 0
    now = timezone.now()
    version = MaskVersion.objects.create(
        case=case,
        number=last + 1,
        file=file_name,
        source=source,
        restored_from=restored_from,
        area_px=area_px,
        created_by=user,
        created_at=now,
    )
    case.mask_version = version
    case.ground_truth_mask = file_name
    case.mask_source = source
    case.mask_updated_by = user
    case.mask_updated_at = now
    case.save(
        update_fields=[
            "mask_version",
            "ground_truth_mask",
            "mask_source",
            "mask_updated_by",
            "mask_updated_at",
            "updated_at",
        ]
    )
    return version


def mask_version_backfill(*, case: Case) -> MaskVersion | None:
    """Record a ground truth stored without a version (made before versions, or by a fixture) as the
    case's version 1; the version in use, or None when the case has no ground truth."""
    if case.mask_version_id is not None or not case.ground_truth_mask:
        return case.mask_version
    if case.mask_versions.exists():  # defensive: a version exists but the pointer was lost
        raise ValueError(f"Case {case.pk} has mask versions but none in use; fix it in the admin.")
    version = MaskVersion.objects.create(
        case=case,
        number=1,
        file=case.ground_truth_mask.name,
        source=case.mask_source or MaskSource.IMPORTED,
        area_px=mask_file_area(case.ground_truth_mask.name),
        created_by=case.mask_updated_by,
        created_at=case.mask_updated_at or case.created_at,
    )
    case.mask_version = version
    case.save(update_fields=["mask_version"])
    return version


def mask_file_area(name: str) -> int:
    """The tumour pixels of a stored 0/255 mask PNG."""
    with default_storage.open(name, "rb") as f:
        return int(np.count_nonzero(np.asarray(Image.open(f).convert("L"))))


def _read_upload(image_file: IO[bytes] | bytes) -> bytes:
    if isinstance(image_file, (bytes, bytearray, memoryview)):
        return bytes(image_file)
    limit = settings.TUMORSITE_MAX_UPLOAD_MB * 1024 * 1024
    size = getattr(image_file, "size", None)
    if size is not None and size > limit:
        raise ImageReadError(
            f"The file is too large ({size / 1024 / 1024:.1f} MB); the limit is {limit // 1024 // 1024} MB."
        )
    if hasattr(image_file, "seek"):
        image_file.seek(0)
    # One byte over the limit is enough to know it is too large without reading a huge stream.
    return image_file.read(limit + 1)


_RASTER_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif"}
_ORIGINAL_FILENAME_MAX = Scan._meta.get_field("original_filename").max_length


def original_filename_clean(filename: str) -> str:
    """The upload's own name as a label: its last path part, NFC, no control characters, at most the
    column's length (the extension kept when cut). Never used to name a stored file."""
    name = re.split(r"[\\/]", unicodedata.normalize("NFC", filename or ""))[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if name in ("", ".", ".."):
        return "upload"
    if len(name) > _ORIGINAL_FILENAME_MAX:
        suffix = PurePath(name).suffix
        suffix = suffix if len(suffix) <= 16 else ""
        name = name[: _ORIGINAL_FILENAME_MAX - len(suffix) - 1] + "\u2026" + suffix
    return name


def scan_display_name(*, image: ScanImage, filename: str, stored: bytes) -> str:
    """The name a scan is shown by. A DICOM file's own name is often built from the patient's name, ID
    and birth date (``Doe^Jane_PID-987654_19610203.dcm``), so it is not kept: the scan is called
    ``dicom-<12 hex of the de-identified copy's digest>.dcm``. Other formats keep their cleaned name."""
    if image.format == ScanFormat.DICOM:
        return f"dicom-{hashlib.sha256(stored).hexdigest()[:12]}.dcm"
    return original_filename_clean(filename)


def _image_patient(image: ScanImage) -> str | None:
    """The patient an upload names: a DICOM's pseudonym (its PatientID is never kept), else the file's
    own pseudonymous ID (a Figshare .mat's PID)."""
    if image.dicom_patient is not None:
        return patient_pseudonym(*image.dicom_patient)
    return image.patient_id


def _stored_bytes(image: ScanImage, data: bytes) -> tuple[bytes, str]:
    """What the record keeps of an upload, and its extension (from the format read, never the name)."""
    if image.stored_bytes is not None:
        return image.stored_bytes, ".dcm"
    if image.format == "mat":
        return pixels_png_bytes(image.pixels), ".png"
    return data, _RASTER_EXTENSIONS.get(image.format, f".{image.format}")


def _new_patient_identifier() -> str:
    return f"anon-{uuid.uuid4().hex[:12]}"

"""Writes to the clinical record: creating cases from uploads and from dataset imports."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from cases.models import Case, MaskSource, Patient, Scan, TumourType, TypeSource
from cases.readers import ImageReadError, ScanImage, read_image
from cases.rendering import mask_png_bytes, pixels_png_bytes


@dataclass
class CasePrepared:
    """A case whose files are in storage but whose rows are not saved yet (see cases_save)."""

    scan: Scan
    case: Case
    stored_names: list[str]


def case_create(
    *,
    image_file: IO[bytes] | bytes,
    filename: str,
    user=None,
    patient_identifier: str | None = None,
    tumour_type: str | None = None,
    source_ref: str | None = None,
) -> Case:
    """Read and validate an uploaded slice and record it as a new case.

    Raises ImageReadError (nothing is stored) when the file cannot be used. DICOM is stored
    de-identified; a Figshare .mat file is stored as a PNG together with its ground-truth mask and label.
    ``tumour_type`` given here counts as the clinician's.
    """
    data = _read_upload(image_file)
    image = read_image(
        data,
        filename,
        max_bytes=settings.TUMORSITE_MAX_UPLOAD_MB * 1024 * 1024,
        max_pixels=settings.TUMORSITE_MAX_PIXELS,
    )
    if tumour_type is not None and tumour_type not in TumourType.values:
        raise ValueError(f"Unknown tumour type {tumour_type!r}; expected one of {TumourType.values}")
    identifier = patient_identifier or image.patient_id or _new_patient_identifier()
    with transaction.atomic():
        patient = patients_get_or_create(identifiers=[identifier])[identifier]
        prepared = case_prepare(
            image=image,
            data=data,
            filename=filename,
            patient=patient,
            user=user,
            tumour_type=tumour_type,
            tumour_type_source=TypeSource.CLINICIAN if tumour_type else None,
            source_ref=source_ref,
        )
        try:
            prepared.scan.save()
            prepared.case.scan = prepared.scan
            prepared.case.save()
        except BaseException:
            _delete_files(prepared.stored_names)
            raise
    return prepared.case


def case_prepare(
    *,
    image: ScanImage,
    data: bytes,
    filename: str,
    patient: Patient,
    user=None,
    tumour_type: str | None = None,
    tumour_type_source: str | None = None,
    source_ref: str | None = None,
    mask: np.ndarray | None = None,
) -> CasePrepared:
    """Store the files of one case and build its (unsaved) Scan and Case.

    What is stored: the de-identified DICOM for DICOM, a PNG for .mat, the upload itself otherwise.
    A ground-truth mask comes from ``mask`` or from the file itself (.mat); its label likewise.
    """
    stem = PurePath(filename).stem or "scan"
    if image.stored_bytes is not None:
        stored, ext = image.stored_bytes, ".dcm"
    elif image.format == "mat":
        stored, ext = pixels_png_bytes(image.pixels), ".png"
    else:
        stored, ext = data, PurePath(filename).suffix.lower() or f".{image.format}"
    now = timezone.now()
    names = []
    try:
        scan_name = default_storage.save(f"scans/{now:%Y/%m}/{stem}{ext}", ContentFile(stored))
        names.append(scan_name)
        mask = image.mask if mask is None else mask
        mask_name = None
        if mask is not None:
            if mask.shape != image.pixels.shape:
                raise ImageReadError(
                    f"The mask is {mask.shape[1]}x{mask.shape[0]} "
                    f"but the image is {image.width}x{image.height}."
                )
            mask_name = default_storage.save(
                f"masks/{now:%Y/%m}/{stem}_mask.png", ContentFile(mask_png_bytes(mask))
            )
            names.append(mask_name)
    except BaseException:
        _delete_files(names)
        raise

    if tumour_type is None and image.label is not None:
        tumour_type, tumour_type_source = image.label, TypeSource.IMPORTED
    scan = Scan(
        file=scan_name,
        original_filename=PurePath(filename).name[:255],
        format=image.format,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(stored).hexdigest(),
        pixel_spacing_mm=image.pixel_spacing_mm,
        pixel_spacing_col_mm=image.pixel_spacing_col_mm,
        uploaded_by=user,
    )
    case = Case(
        patient=patient,
        source_ref=source_ref,
        tumour_type=tumour_type,
        tumour_type_source=tumour_type_source if tumour_type else None,
        ground_truth_mask=mask_name,
        mask_source=MaskSource.IMPORTED if mask_name else None,
        mask_updated_at=now if mask_name else None,
        created_by=user,
    )
    return CasePrepared(scan=scan, case=case, stored_names=names)


def cases_save(prepared: list[CasePrepared]) -> list[Case]:
    """Save many prepared cases with two bulk inserts; on failure their stored files are removed."""
    if not prepared:
        return []
    try:
        with transaction.atomic():
            scans = Scan.objects.bulk_create([p.scan for p in prepared])
            for item, scan in zip(prepared, scans, strict=True):
                item.case.scan = scan
            return Case.objects.bulk_create([p.case for p in prepared])
    except BaseException:
        _delete_files([name for p in prepared for name in p.stored_names])
        raise


def patients_get_or_create(*, identifiers: Iterable[str]) -> dict[str, Patient]:
    """Patients by identifier, creating the missing ones in one insert."""
    wanted = set(identifiers)
    found = {p.identifier: p for p in Patient.objects.filter(identifier__in=wanted)}
    missing = wanted - found.keys()
    if missing:
        Patient.objects.bulk_create([Patient(identifier=i) for i in sorted(missing)], ignore_conflicts=True)
        found.update({p.identifier: p for p in Patient.objects.filter(identifier__in=missing)})
    return found


def case_ground_truth_set(*, case: Case, mask: np.ndarray, user) -> Case:
    """Record a clinician's corrected tumour outline (bool or 0/255 array at the scan's size)."""
    mask = np.asarray(mask)
    if mask.shape != (case.scan.height, case.scan.width):
        raise ValueError(f"mask is {mask.shape}, the scan is {(case.scan.height, case.scan.width)}")
    old = case.ground_truth_mask.name if case.ground_truth_mask else None
    name = default_storage.save(
        f"masks/{timezone.now():%Y/%m}/case{case.pk}_corrected.png", ContentFile(mask_png_bytes(mask > 0))
    )
    case.ground_truth_mask = name
    case.mask_source = MaskSource.CORRECTED
    case.mask_updated_by = user
    case.mask_updated_at = timezone.now()
    case.save(
        update_fields=["ground_truth_mask", "mask_source", "mask_updated_by", "mask_updated_at", "updated_at"]
    )
    if old:
        transaction.on_commit(lambda: default_storage.delete(old))
    return case


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


def _new_patient_identifier() -> str:
    return f"anon-{uuid.uuid4().hex[:12]}"


def _delete_files(names: Iterable[str]) -> None:
    for name in names:
        default_storage.delete(name)

"""Reads from the clinical record."""

from __future__ import annotations

import numpy as np
import pydicom
from django.db.models import F, QuerySet
from PIL import Image
from pydicom.dataset import Dataset

from cases.models import Case, MaskVersion, ScanFormat, TumourType
from cases.readers import ScanImage, read_image


def case_list(*, tumour_type: str | None = None, patient_identifier: str | None = None) -> QuerySet[Case]:
    cases = Case.objects.select_related("patient", "scan")
    if tumour_type:
        cases = cases.filter(tumour_type=tumour_type)
    if patient_identifier:
        cases = cases.filter(patient__identifier=patient_identifier)
    return cases


def case_get(*, case_id: int) -> Case | None:
    return Case.objects.select_related("patient", "scan").filter(pk=case_id).first()


def study_slices(*, study_id: int) -> QuerySet[Case]:
    """A study's cases in slice order: along the slice normal where the files say, else by InstanceNumber
    (a frame's number), else as recorded."""
    return (
        Case.objects.filter(study_id=study_id)
        .select_related("scan")
        .order_by(F("slice_position").asc(nulls_last=True), F("slice_number").asc(nulls_last=True), "pk")
    )


def case_base_list() -> QuerySet[Case]:
    """Cases with a trusted ground-truth outline (imported or corrected), with their patient and scan."""
    return case_list().case_base()


def scan_read(*, scan) -> ScanImage:
    """The stored scan as a grayscale slice (de-identified DICOM and .mat-derived PNG included)."""
    with scan.file.open("rb") as f:
        data = f.read()
    # Stored files were validated on the way in; the limits here only guard against a swapped file.
    return read_image(
        data, scan.file.name, max_bytes=max(len(data), 1), max_pixels=max(scan.width * scan.height, 1)
    )


def scan_dicom_header(*, scan) -> Dataset | None:
    """The stored (de-identified) DICOM's header without its pixel data; None for a scan not in DICOM."""
    if scan.format != ScanFormat.DICOM:
        return None
    with scan.file.open("rb") as f:
        # force: a bare data set (no preamble) is stored as it came, once de-identified.
        return pydicom.dcmread(f, stop_before_pixels=True, force=True)


def case_pixels(*, case: Case) -> np.ndarray:
    """The case's slice as a 2-D array, read back from media storage with the upload's reader."""
    return scan_read(scan=case.scan).pixels


def case_ground_truth_mask(*, case: Case) -> np.ndarray | None:
    """The case's ground-truth mask (the mask version in use) as bool H x W, or None."""
    if not case.ground_truth_mask:
        return None
    return _mask_read(case.ground_truth_mask)


def case_mask_versions(*, case: Case) -> QuerySet[MaskVersion]:
    """Every stored outline of the case, oldest first, with who made it and what it was restored from."""
    return case.mask_versions.select_related("created_by", "restored_from").order_by("number")


def case_mask_version_get(*, case: Case, number: int) -> MaskVersion | None:
    return case.mask_versions.select_related("created_by", "restored_from").filter(number=number).first()


def mask_version_mask(*, version: MaskVersion) -> np.ndarray:
    """One version's outline as bool H x W."""
    return _mask_read(version.file)


def _mask_read(field) -> np.ndarray:
    with field.open("rb") as f:
        return np.asarray(Image.open(f).convert("L")) > 0


def case_type_sources_summary(*, case: Case) -> str:
    """What the type suggestion rests on, for people: "From similar cases: Glioma 62% · image classifier:
    Glioma 91% (weighs 75%)"; empty before the first suggestion."""
    sources = case.predicted_type_sources or {}
    labels = dict(TumourType.choices)

    def leader(shares):
        return max(sorted(shares), key=shares.get)

    parts = []
    knn, classifier = sources.get("similar_cases") or {}, sources.get("classifier") or {}
    if knn:
        best = leader(knn)
        voters = sources.get("neighbours")
        if voters:  # the similar-cases panel shows these very cases, in this order
            counts: dict[str, int] = {}
            for n in voters:
                counts[n["tumour_type"]] = counts.get(n["tumour_type"], 0) + 1
            tally = ", ".join(
                f"{c} {labels.get(t, t)}" for t, c in sorted(counts.items(), key=lambda i: -i[1])
            )
            parts.append(
                f"similar cases: {labels.get(best, best)} {round(100 * knn[best])}% "
                f"(the {len(voters)} shown below: {tally}; the nearer weigh more)"
            )
        else:
            parts.append(f"similar cases: {labels.get(best, best)} {round(100 * knn[best])}%")
    if classifier:
        best = leader(classifier)
        weight = round(100 * float(sources.get("classifier_weight") or 0))
        parts.append(
            f"image classifier: {labels.get(best, best)} {round(100 * classifier[best])}% (weighs {weight}%)"
        )
    return "From " + " · ".join(parts) if parts else ""

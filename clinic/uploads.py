"""An upload recorded and queued: what the upload API and DICOMweb's STOW-RS share.

The cases of a file (one per frame of a multi-frame DICOM) and their segmentation runs are written in
one transaction, so a file is either recorded and queued whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from cases.models import Case
from cases.services import CaseUpload, cases_create
from cases.storage import atomic_with_files
from segmentation.models import SegmentationRun
from segmentation.services import segmentation_runs_create_for_case


@dataclass(frozen=True)
class UploadRecorded:
    cases: list[Case]
    runs: list[SegmentationRun]


def upload_record(
    *,
    uploads: list[CaseUpload],
    user,
    patient_identifier: str | None = None,
    tumour_type: str | None = None,
    force: bool = False,
) -> UploadRecorded:
    """Record the slices of one file (``cases.services.case_uploads_read``, read before this so the write
    lock is held for the rows only) as cases of one study and queue each one's segmentation runs.
    Raises what ``cases_create`` raises; then nothing is stored."""
    # The outermost block deletes the stored files if the runs' rows fail too (cases.storage).
    with atomic_with_files():
        cases = cases_create(
            uploads=uploads,
            user=user,
            patient_identifier=patient_identifier,
            tumour_type=tumour_type,
            force=force,
        )
        runs = [run for case in cases for run in segmentation_runs_create_for_case(case=case)]
    return UploadRecorded(cases=cases, runs=runs)

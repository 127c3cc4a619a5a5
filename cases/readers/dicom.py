"""DICOM through pydicom: one 2D slice, lookup tables applied, and the header de-identified.

De-identification follows the Basic Application Level Confidentiality Profile of DICOM PS3.15
Annex E (table E.1-1): identifying attributes are removed (X), emptied (Z) or replaced with a dummy
(D); UIDs are replaced (U) consistently, so two slices of one study still share a study UID; private
tags are removed. The pixel data cannot be cleaned, so a file that declares burned-in annotations is
refused.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import generate_uid

from .base import DEFAULT_LIMITS, ImageReadError, Limits, ScanImage

# Attributes of PS3.15 table E.1-1 that the basic profile empties (Z) or removes (X). Type 2 attributes
# (which must be present) are emptied, the rest removed. D (dummy) attributes are emptied as well:
# an empty value is a valid dummy for every type 2 attribute here.
_EMPTY = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "ContentDate",
    "ContentTime",
    "ContrastBolusAgent",
]
_REMOVE = [
    "AcquisitionComments",
    "AcquisitionContextSequence",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "AcquisitionTime",
    "ActualHumanPerformersSequence",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDate",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "AdmittingTime",
    "Allergies",
    "Arbitrary",
    "AuthorObserverSequence",
    "BranchOfService",
    "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription",
    "ContentCreatorName",
    "ContentSequence",
    "ContributionDescription",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "CurveDate",
    "CurveTime",
    "CustodialOrganizationSequence",
    "DataSetTrailingPadding",
    "DerivationDescription",
    "DetectorID",
    "DeviceSerialNumber",
    "DeviceUID",
    "DigitalSignaturesSequence",
    "DischargeDiagnosisDescription",
    "DistributionAddress",
    "DistributionName",
    "EthnicGroup",
    "FrameComments",
    "GantryID",
    "GeneratorID",
    "GraphicAnnotationSequence",
    "HumanPerformerName",
    "HumanPerformerOrganization",
    "IconImageSequence",
    "IdentifyingComments",
    "ImageComments",
    "ImagePresentationComments",
    "ImagingServiceRequestComments",
    "Impressions",
    "InstanceCreatorUID",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence",
    "InterpretationAuthor",
    "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer",
    "InterpretationRecorder",
    "InterpretationText",
    "InterpretationTranscriber",
    "IssuerOfAdmissionID",
    "IssuerOfPatientID",
    "IssuerOfServiceEpisodeID",
    "MAC",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ModifiedAttributesSequence",
    "ModifyingDeviceID",
    "ModifyingDeviceManufacturer",
    "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults",
    "Occupation",
    "OperatorIdentificationSequence",
    "OperatorsName",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OriginalAttributesSequence",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "ParticipantSequence",
    "PatientAddress",
    "PatientAge",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence",
    "PatientReligiousPreference",
    "PatientSexNeutered",
    "PatientSize",
    "PatientState",
    "PatientTelephoneNumbers",
    "PatientTransportArrangements",
    "PatientWeight",
    "PerformedLocation",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence",
    "PerformedStationName",
    "PerformedStationNameCodeSequence",
    "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PersonAddress",
    "PersonIdentificationCodeSequence",
    "PersonName",
    "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "PreMedication",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForTheImagingServiceRequest",
    "ReasonForStudy",
    "ReferencedDigitalSignatureSequence",
    "ReferencedPatientAliasSequence",
    "ReferencedPatientSequence",
    "ReferencedSOPInstanceMACSequence",
    "ReferencedStudySequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedContrastAgent",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestedProcedureLocation",
    "RequestingPhysician",
    "RequestingService",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ResultsComments",
    "ResultsDistributionListSequence",
    "ResultsIDIssuer",
    "ScheduledHumanPerformersSequence",
    "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledStationName",
    "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "SeriesDate",
    "SeriesDescription",
    "SeriesTime",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SmokingStatus",
    "SourceImageSequence",
    "SpecialNeeds",
    "StationName",
    "StudyComments",
    "StudyDescription",
    "StudyIDIssuer",
    "TextComments",
    "TextString",
    "TimezoneOffsetFromUTC",
    "TopicAuthor",
    "TopicKeywords",
    "TopicSubject",
    "TopicTitle",
    "VerifyingObserverIdentificationCodeSequence",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VerifyingOrganization",
    "VisitComments",
]
_REPLACE_UID = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID",
    "ReferencedFrameOfReferenceUID",
    "RelatedFrameOfReferenceUID",
    "SynchronizationFrameOfReferenceUID",
    "ConcatenationUID",
    "DimensionOrganizationUID",
    "IrradiationEventUID",
    "StorageMediaFileSetUID",
    "TransactionUID",
    "FiducialUID",
    "TargetUID",
    "UID",
]
_DEIDENTIFICATION_METHOD = "DICOM PS3.15 Annex E basic profile (TumorSite)"  # LO: 64 chars at most

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


def read_dicom(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ScanImage:
    limits.check_bytes(len(data))
    try:
        with warnings.catch_warnings():
            # force=True reads files without the DICM preamble; pydicom warns about every odd value in them.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "PixelData" not in ds:
            if data[128:132] != b"DICM" and "SOPClassUID" not in ds and "Modality" not in ds:
                raise ImageReadError(
                    "The file is not an image we can read (PNG, JPEG, TIFF, DICOM or Figshare .mat)."
                )
            raise ImageReadError(
                "The DICOM file has no image in it (no pixel data); it may be a report or a truncated file."
            )
    except ImageReadError:
        raise
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ImageReadError(f"The DICOM file is truncated or damaged and cannot be read ({exc}).") from None

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(
            f"The DICOM file is a multi-frame image ({frames} frames); "
            "export the single slice you want as its own file."
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    limits.check_pixels(cols, rows)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise ImageReadError("The DICOM image is in colour; TumorSite reads grayscale MRI slices only.")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise ImageReadError(
            "The DICOM file says the patient's details are burned into the image pixels; "
            "it cannot be de-identified, so it is not stored."
        )

    try:
        raw = ds.pixel_array
    except Exception as exc:  # pydicom raises many types here: missing decoders, short buffers...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise ImageReadError(
            "The DICOM pixel data cannot be decoded "
            f"(transfer syntax {getattr(syntax, 'name', syntax)}): {exc}"
        ) from None
    if raw.ndim != 2:
        raise ImageReadError(f"The DICOM pixel data has shape {raw.shape}; a single 2D slice is needed.")

    pixels = apply_modality_lut(raw, ds)
    pixels = apply_voi_lut(pixels, ds, index=0)
    pixels = np.asarray(pixels, dtype=np.float32)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1 shows low values as white; flip so every slice has bright = high.
        pixels = pixels.max() + pixels.min() - pixels

    spacing_row = spacing_col = None
    if "PixelSpacing" in ds and ds.PixelSpacing and len(ds.PixelSpacing) == 2:
        spacing_row, spacing_col = float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])

    metadata = {key: _plain(ds.get(key)) for key in _KEEP_METADATA if key in ds}
    deidentify(ds)
    metadata["deidentified"] = _DEIDENTIFICATION_METHOD
    return ScanImage(
        pixels=np.ascontiguousarray(pixels),
        format="dicom",
        pixel_spacing_mm=spacing_row,
        pixel_spacing_col_mm=spacing_col,
        metadata=metadata,
        stored_bytes=_to_bytes(ds),
    )


def deidentify(ds: Dataset) -> Dataset:
    """Apply the basic profile to ``ds`` in place (nested sequences included) and return it."""
    uid_map: dict[str, str] = {}

    def clean(dataset: Dataset) -> None:
        dataset.remove_private_tags()
        for keyword in _REMOVE:
            if keyword in dataset:
                delattr(dataset, keyword)
        for keyword in _EMPTY:
            if keyword in dataset:
                dataset.data_element(keyword).value = None
        for keyword in _REPLACE_UID:
            if keyword in dataset and dataset.data_element(keyword).VR == "UI":
                dataset.data_element(keyword).value = _replace_uid(
                    dataset.data_element(keyword).value, uid_map
                )
        for tag in [
            elem.tag for elem in dataset if 0x6000 <= elem.tag.group <= 0x60FF and elem.tag.group % 2 == 0
        ]:
            if tag.element in (0x3000, 0x4000):  # overlay data and overlay comments: may carry text
                del dataset[tag]
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value:
                    clean(item)

    clean(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = _DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
        "113100",
        "DCM",
        "Basic Application Confidentiality Profile",
    )
    ds.DeidentificationMethodCodeSequence = [code]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _replace_uid(value, uid_map: dict[str, str]):
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return [_replace_uid(v, uid_map) for v in value]
    if not value:
        return value
    if value not in uid_map:
        # Deterministic from the original, so slices of one study keep a common (new) study UID.
        uid_map[value] = generate_uid(entropy_srcs=["tumorsite-deid", str(value)])
    return uid_map[value]


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

"""The clinical record: pseudonymous patients, their scans, cases and diagnoses."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class TumourType(models.TextChoices):
    MENINGIOMA = "meningioma", "Meningioma"
    GLIOMA = "glioma", "Glioma"
    PITUITARY = "pituitary", "Pituitary tumour"


class TypeSource(models.TextChoices):
    CLINICIAN = "clinician", "Entered by a clinician"
    PREDICTED = "predicted", "Predicted"
    IMPORTED = "imported", "Imported with the dataset"


class MaskSource(models.TextChoices):
    IMPORTED = "imported", "Imported with the dataset"
    CORRECTED = "corrected", "Corrected by a clinician"
    RESTORED = "restored", "Restored by a clinician from an earlier version"


# Where a trusted ground-truth outline comes from: such a case belongs to the similar-case base (which
# may also hold cases whose AI mask a clinician validated: the record does not know of AI masks).
CASE_BASE_MASK_SOURCES = (MaskSource.IMPORTED, MaskSource.CORRECTED, MaskSource.RESTORED)


class CaseQuerySet(models.QuerySet):
    def case_base(self) -> CaseQuerySet:
        """The cases with a trusted ground-truth outline (``Case.in_case_base``)."""
        return self.filter(ground_truth_mask__gt="", mask_source__in=CASE_BASE_MASK_SOURCES)


class ScanFormat(models.TextChoices):
    PNG = "png", "PNG"
    JPEG = "jpeg", "JPEG"
    TIFF = "tiff", "TIFF"
    DICOM = "dicom", "DICOM"
    MAT = "mat", "Figshare MATLAB v7.3"


class Patient(models.Model):
    # Pseudonymous: never a name or a hospital number (DICOM uploads are de-identified first).
    identifier = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["identifier"]

    def __str__(self) -> str:
        return self.identifier


class Study(models.Model):
    """One imaging study of a patient: every slice of one DICOM study (each frame of a multi-frame file,
    each file sharing its StudyInstanceUID, sent together or one after another), or one uploaded image
    in another format. The patient's history plots studies, not slices."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    # st-<16 hex>: a keyed HMAC of the DICOM StudyInstanceUID (cases.pseudonyms), which is never stored;
    # null for a study made of a non-DICOM upload (nothing else can join it).
    uid_pseudonym = models.CharField(max_length=32, unique=True, null=True, blank=True)
    # DICOM StudyDate, kept under PS3.15's "Retain Longitudinal Temporal Information with Full Dates"
    # option (docs/operations.md); null when the file has none or the upload is not DICOM.
    study_date = models.DateField(null=True, blank=True)
    modality = models.CharField(max_length=16, blank=True, help_text="DICOM Modality (MR, CT...)")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["patient_id", "study_date", "created_at", "id"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"Study {self.pk} ({self.modality or 'image'}, {self.study_date or 'no date'})"


class Scan(models.Model):
    file = models.FileField(upload_to="scans/%Y/%m/")
    original_filename = models.CharField(max_length=255)
    format = models.CharField(max_length=8, choices=ScanFormat.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    pixel_spacing_mm = models.FloatField(null=True, blank=True, help_text="Row spacing (mm between rows)")
    pixel_spacing_col_mm = models.FloatField(null=True, blank=True, help_text="Column spacing (mm)")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.original_filename} ({self.width}x{self.height} {self.format})"


class Case(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    scan = models.OneToOneField(Scan, on_delete=models.CASCADE, related_name="case")
    # The study the slice belongs to (null: a case made before studies by a fixture or an old script).
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.PROTECT, related_name="cases")
    # Where the slice sits in its study, for ordering: millimetres along the slice normal
    # (ImagePositionPatient projected on the cross product of ImageOrientationPatient's two directions)
    # when the DICOM says, and its InstanceNumber (a multi-frame file's frame number) otherwise.
    slice_position = models.FloatField(null=True, blank=True)
    slice_number = models.IntegerField(null=True, blank=True)
    # se-<16 hex>: the keyed HMAC of the DICOM SeriesInstanceUID; "" when not DICOM.
    series_pseudonym = models.CharField(max_length=32, blank=True)
    # Where an imported case came from, e.g. "figshare:123": makes imports idempotent.
    source_ref = models.CharField(max_length=64, unique=True, null=True, blank=True)
    tumour_type = models.CharField(  # noqa: DJ001 (null: not known yet)
        max_length=16, choices=TumourType.choices, null=True, blank=True
    )
    tumour_type_source = models.CharField(  # noqa: DJ001 (null: not known yet)
        max_length=16, choices=TypeSource.choices, null=True, blank=True
    )
    predicted_tumour_type = models.CharField(  # noqa: DJ001 (null: not known yet)
        max_length=16, choices=TumourType.choices, null=True, blank=True
    )
    predicted_confidence = models.FloatField(null=True, blank=True)
    # What the suggestion was made of: {"similar_cases": {type: share}, "classifier": {type: p} or None,
    # "classifier_weight": w, "classifier_version": "name@hash12" or None}, written with the suggestion.
    predicted_type_sources = models.JSONField(null=True, blank=True)
    ground_truth_mask = models.FileField(upload_to="masks/%Y/%m/", null=True, blank=True)
    mask_source = models.CharField(  # noqa: DJ001 (null: not known yet)
        max_length=16, choices=MaskSource.choices, null=True, blank=True
    )
    mask_updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    mask_updated_at = models.DateTimeField(null=True, blank=True)
    # The ground-truth outline in use: the newest of ``mask_versions`` unless one was restored (its file is
    # ``ground_truth_mask``). Null when the case has no ground truth. RESTRICT, not PROTECT: the version in
    # use cannot be deleted on its own, but deleting the case deletes it with the case's other versions.
    mask_version = models.ForeignKey(
        "MaskVersion", null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    # Raised by every clinical edit (outline, tumour type, diagnoses): a page or an API client that saves
    # on top of an older revision is refused (HTTP 409) instead of overwriting what it did not see.
    revision = models.PositiveIntegerField(default=1)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cases_created",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CaseQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("correct_mask", "Can correct or restore a case's tumour outline"),
            ("set_tumour_type", "Can record a case's tumour type"),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.patient_id and self.patient.identifier})"

    @property
    def in_case_base(self) -> bool:
        """Whether the case has a trusted ground-truth outline (``CaseQuerySet.case_base``'s rule)."""
        return bool(self.ground_truth_mask) and self.mask_source in CASE_BASE_MASK_SOURCES

    @property
    def has_recorded_type(self) -> bool:
        """Whether the tumour type is a clinician's or the dataset's; a predicted one is only a suggestion."""
        return bool(self.tumour_type) and self.tumour_type_source in (
            TypeSource.CLINICIAN,
            TypeSource.IMPORTED,
        )


class MaskVersion(models.Model):
    """One ground-truth outline of a case. Versions are only ever added: a correction or a restore makes a
    new one, and every earlier one (the imported expert mask included) stays stored and downloadable."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="mask_versions")
    number = models.PositiveIntegerField(help_text="1, 2, ... within the case")
    file = models.FileField(upload_to="masks/%Y/%m/")
    source = models.CharField(max_length=16, choices=MaskSource.choices)
    restored_from = models.ForeignKey(  # RESTRICT: kept while restored, deleted with its case
        "self", null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    area_px = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["case_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["case", "number"], name="unique_mask_version_number"),
        ]

    def __str__(self) -> str:
        return f"case {self.case_id} mask v{self.number} ({self.source})"


class Diagnosis(models.Model):
    name = models.CharField(max_length=200, help_text="As first entered")
    key = models.CharField(max_length=200, unique=True, help_text="Normalised name, for matching")
    tumour_type = models.CharField(  # noqa: DJ001 (null: not known yet)
        max_length=16, choices=TumourType.choices, null=True, blank=True
    )
    added_automatically = models.BooleanField(default=False)
    first_case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Catalogue curation: a retired entry is no longer offered or linked anew; a merged one is retired
    # into the entry that took over its case links.
    retired_at = models.DateTimeField(null=True, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from"
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "diagnoses"
        permissions = [("curate_diagnosis", "Can merge, rename and retire catalogue entries")]

    def __str__(self) -> str:
        return self.name


class CaseDiagnosis(models.Model):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="case_diagnoses")
    diagnosis = models.ForeignKey(Diagnosis, on_delete=models.PROTECT, related_name="case_diagnoses")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "diagnosis"], name="unique_case_diagnosis")]
        verbose_name_plural = "case diagnoses"

    def __str__(self) -> str:
        return f"{self.case_id}: {self.diagnosis_id}"

"""Model versions (the segmenters this site can run, and the tumour-type classifier) and segmentation runs
(one segmenter on one case)."""

from django.conf import settings
from django.db import models

ENSEMBLE_NAME = "ensemble"
# The type classifier's slot: one classifier suggests the type, whatever its bundle is called.
TYPE_CLASSIFIER_SLOT = "type_classifier"


class Stage(models.TextChoices):
    """A version's place in the lifecycle (docs/training.md, "Model lifecycle")."""

    CANDIDATE = "candidate", "Candidate (recorded, never served)"
    ACTIVE = "active", "Active (serves its slot)"
    RETIRED = "retired", "Retired (replaced; kept with its file for a rollback)"


class Kind(models.TextChoices):
    """What a version does: a segmenter outlines the tumour (runs are made with it); the type classifier
    takes part in the type suggestion (recommender.services)."""

    SEGMENTER = "segmenter", "Segmenter (outlines the tumour)"
    TYPE_CLASSIFIER = "type_classifier", "Type classifier (suggests the tumour type)"


class ModelVersionQuerySet(models.QuerySet):
    def segmenters(self) -> "ModelVersionQuerySet":
        """The versions that outline tumours (the ensemble among them): what runs are made with."""
        return self.filter(kind=Kind.SEGMENTER)


class ModelVersion(models.Model):
    # The active version of a slot is named after the slot (what settings, the ensemble's members and the
    # recommender look up); a candidate or retired one is named ``<slot>@<first 12 hex of its hash>``.
    name = models.CharField(max_length=100, unique=True)
    architecture = models.CharField(
        max_length=32, help_text='unet, unet_plus_plus, attention_unet or "ensemble"'
    )
    encoder = models.CharField(max_length=32, blank=True)
    # Relative to TUMORSITE_MODELS_DIR, so the record survives moving the models volume. Empty for the
    # ensemble.
    file_path = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # SHA-256 of the .keras file as last synced: new weights under the same name are a new model to
    # anything that stored its outputs (e.g. embeddings from its encoder). Empty for the ensemble.
    file_sha256 = models.CharField(max_length=64, blank=True)
    threshold = models.FloatField(default=0.5)
    input_size = models.PositiveIntegerField(default=128)
    # Serves new runs. Only an active-stage version may (a database constraint); an active one is
    # switched off when its file is gone or by an admin.
    is_active = models.BooleanField(default=True)
    is_ensemble = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    slot = models.CharField(
        max_length=100, db_index=True, help_text="the served name this version is (or was, or may become)"
    )
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.ACTIVE)
    evaluation = models.JSONField(
        null=True, blank=True, help_text="candidates: evaluate_candidate's paired comparison with the active"
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SEGMENTER, db_index=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["is_ensemble", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_active=False) | models.Q(stage="active"),
                name="only_an_active_stage_version_serves",
            ),
            models.UniqueConstraint(
                fields=["slot"], condition=models.Q(stage="active"), name="one_active_version_per_slot"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.slot:  # a version made without the lifecycle is the version of its own name
            self.slot = self.name.split("@")[0]
        super().save(*args, **kwargs)

    @property
    def weights_key(self) -> str:
        """``slot@<first 12 hex of the file hash>``: names the exact weights (stored with their outputs);
        unchanged when a promotion or rollback renames the row."""
        slot = self.slot or self.name
        return f"{slot}@{self.file_sha256[:12]}" if self.file_sha256 else slot

    @property
    def members(self) -> list[str]:
        """For the ensemble: the names of the model versions whose probabilities it averages."""
        return list(self.metadata.get("members", [])) if self.is_ensemble else []


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Pending review"
    VALIDATED = "validated", "Validated by a clinician"
    REJECTED = "rejected", "Rejected by a clinician"


class SegmentationRun(models.Model):
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="segmentation_runs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # 0/255 PNG at the scan's size.
    mask_file = models.FileField(upload_to="segmentations/%Y/%m/", blank=True)
    # uint8 PNG of round(prob * 255): 8 bits are plenty for display and for averaging into the ensemble.
    probability_file = models.FileField(upload_to="segmentations/%Y/%m/", blank=True)
    area_px = models.PositiveIntegerField(null=True, blank=True)
    area_mm2 = models.FloatField(null=True, blank=True)
    bbox = models.JSONField(null=True, blank=True, help_text="[x0, y0, x1, y1], x1/y1 exclusive, in pixels")
    centroid = models.JSONField(null=True, blank=True, help_text="[x, y] in pixels")
    runtime_ms = models.FloatField(null=True, blank=True)
    # The exact weights that made this mask (``name@sha256[:12]``; for the ensemble, its members'), kept
    # because a model version's row is updated in place when new weights arrive under the same name.
    weights = models.CharField(max_length=255, blank=True)
    # Ensemble runs only: mean pairwise Dice of the members' masks (ml.agreement), and whether it fell
    # below the flag_below chosen on the validation split for these weights (null: no choice stored).
    agreement = models.FloatField(
        null=True, blank=True, help_text="ensemble only: mean Dice between every pair of member masks"
    )
    agreement_flagged = models.BooleanField(
        null=True, blank=True, help_text="ensemble only: agreement below the validated flag_below"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    review_status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.PENDING
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reason = models.TextField(blank=True, help_text="why the reviewer rejected (or validated) it")

    class Meta:
        ordering = ["case_id", "model_version__is_ensemble", "model_version__name"]
        permissions = [("review_segmentationrun", "Can validate or reject an AI mask")]
        constraints = [
            models.UniqueConstraint(fields=["case", "model_version"], name="unique_run_per_case_and_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} on case {self.case_id}: {self.status}"

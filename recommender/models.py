"""Stored case descriptions for similar-case retrieval and tumour-type suggestion."""

from django.db import models

from recommender.features import N_FEATURES
from recommender.fields import HnswIndex, VectorField
from recommender.ranking import DISCRIMINANT_DIM

# The learned embedding is reduced by PCA (fitted on the case base) to this many dimensions, so the
# combined vector has a fixed length whatever the segmenter's bottleneck width.
EMBEDDING_DIM = 32
COMBINED_DIM = DISCRIMINANT_DIM + N_FEATURES + EMBEDDING_DIM


class MaskKind(models.TextChoices):
    GROUND_TRUTH = "ground_truth", "Ground-truth mask (imported or corrected)"
    VALIDATED = "validated", "AI mask validated by a clinician"
    PRIMARY = "primary", "AI mask of the primary model"


class CaseFeatures(models.Model):
    case = models.OneToOneField("cases.Case", on_delete=models.CASCADE, related_name="features")
    extractor_version = models.CharField(max_length=32)
    mask_kind = models.CharField(max_length=16, choices=MaskKind.choices)
    features = VectorField(
        dimensions=N_FEATURES, help_text="Raw hand-made features, see recommender.features"
    )
    # Pooled bottleneck of the primary segmenter (width depends on the model, hence no fixed dimension).
    embedding = VectorField(null=True, blank=True)
    embedding_model = models.CharField(max_length=100, blank=True)
    # Discriminants + standardised features + PCA-reduced embedding, weighted (recommender.ranking).
    # Null until a scaler exists.
    combined = VectorField(dimensions=COMBINED_DIM, null=True, blank=True)
    scaler = models.ForeignKey(
        "FeatureScaler", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Denormalised from the case so the vector index can filter without a join.
    in_base = models.BooleanField(default=False, db_index=True)
    tumour_type = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001 (null: not known yet)
    patient_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "case features"
        indexes = [
            # Nearest neighbours by Euclidean distance over the base cases only (partial), on PostgreSQL
            # (recommender.index.PgvectorIndex). m=32 / ef_construction=128: see migration 0004.
            HnswIndex(
                name="recommender_casefeatures_combined_hnsw",
                fields=["combined"],
                opclasses=["vector_l2_ops"],
                m=32,
                ef_construction=128,
                condition=models.Q(in_base=True),
            ),
        ]

    def __str__(self) -> str:
        return f"features of case {self.case_id} ({self.extractor_version}, {self.mask_kind})"


class FeatureScaler(models.Model):
    """How raw features and embeddings become the combined vector; refitted on the case base."""

    extractor_version = models.CharField(max_length=32)
    embedding_model = models.CharField(max_length=100, blank=True)
    params = models.JSONField(
        help_text="feature mean/std, embedding mean, PCA components and scales, weights"
    )
    n_cases = models.PositiveIntegerField()
    is_current = models.BooleanField(default=True)
    fitted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-fitted_at", "-id"]

    def __str__(self) -> str:
        return f"scaler {self.pk} ({self.extractor_version}, {self.n_cases} cases)"


class AnalysisStatus(models.TextChoices):
    """What a case's analysis found before any type or similar case is offered (recommender.analysis)."""

    TUMOUR = "tumour", "Tumour outlined"
    NO_TUMOUR = "no_tumour", "No tumour found by the models"
    NOT_BRAIN_MRI = "not_brain_mri", "This does not look like a brain MRI slice the models were trained on"


class CaseAnalysis(models.Model):
    """The last analysis of a case: whether it gets a type suggestion and similar cases at all, and the
    outlier warnings on its outline. No row: not analysed yet, or no usable outline (a rejected mask)."""

    case = models.OneToOneField("cases.Case", on_delete=models.CASCADE, related_name="analysis")
    status = models.CharField(max_length=16, choices=AnalysisStatus.choices)
    flags = models.JSONField(default=list, help_text="outlier warnings: [{code, message}]")
    detail = models.JSONField(default=dict, help_text="the figures behind the status and the flags")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "case analyses"

    def __str__(self) -> str:
        return f"analysis of case {self.case_id}: {self.status}"


class DescriptionRequest(models.Model):
    """A description of the case asked for from a web request (a review, a correction, a chosen type) and
    not yet done: the outbox that ``descriptions_sweep_task`` sends again when its message was lost (the
    broker was down) or its worker died. Deleted by the task that describes the case."""

    case = models.OneToOneField("cases.Case", on_delete=models.CASCADE, related_name="description_request")
    reason = models.CharField(max_length=100)
    requested_at = models.DateTimeField(help_text="the latest ask; a description started later answers it")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="last handed to the queue, if ever")
    sends = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"description of case {self.case_id} asked {self.reason}"

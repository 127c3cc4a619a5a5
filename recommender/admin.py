from django.contrib import admin

from recommender.models import CaseFeatures, FeatureScaler


@admin.register(CaseFeatures)
class CaseFeaturesAdmin(admin.ModelAdmin):
    list_display = [
        "case",
        "extractor_version",
        "mask_kind",
        "embedding_model",
        "in_base",
        "tumour_type",
        "updated_at",
    ]
    list_filter = ["in_base", "mask_kind", "tumour_type", "extractor_version"]
    raw_id_fields = ["case"]
    exclude = ["features", "embedding", "combined"]


@admin.register(FeatureScaler)
class FeatureScalerAdmin(admin.ModelAdmin):
    list_display = ["id", "extractor_version", "embedding_model", "n_cases", "is_current", "fitted_at"]
    exclude = ["params"]

from django.contrib import admin

from segmentation.models import ModelVersion, SegmentationRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "architecture",
        "encoder",
        "input_size",
        "threshold",
        "is_active",
        "is_ensemble",
        "created_at",
    ]
    list_filter = ["is_active", "is_ensemble", "architecture"]
    search_fields = ["name"]


@admin.register(SegmentationRun)
class SegmentationRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "case",
        "model_version",
        "status",
        "attempts",
        "area_px",
        "runtime_ms",
        "review_status",
        "finished_at",
    ]
    list_filter = ["status", "review_status", "model_version"]
    raw_id_fields = ["case", "reviewed_by"]
    readonly_fields = ["created_at", "started_at", "finished_at"]

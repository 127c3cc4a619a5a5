from django.contrib import admin

from audit.services import audit_record
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
    # What the weights are is sync_models' to record (from the file); the admin may switch a version on
    # or off and set its threshold, and each such save is one model.changed entry in the audit trail.
    readonly_fields = [
        "name",
        "file_path",
        "file_sha256",
        "metadata",
        "architecture",
        "encoder",
        "is_ensemble",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        changes = {name: [form.initial.get(name), form.cleaned_data.get(name)] for name in form.changed_data}
        super().save_model(request, obj, form, change)
        if changes:
            audit_record(
                event="model.changed",
                obj=obj,
                user=request.user,
                changes=changes,
                detail={"how": "admin site"},
            )


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

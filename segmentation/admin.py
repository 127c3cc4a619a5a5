from django.contrib import admin

from audit.services import audit_record
from segmentation.models import ModelVersion, SegmentationRun, Stage


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slot",
        "kind",
        "stage",
        "architecture",
        "encoder",
        "input_size",
        "threshold",
        "is_active",
        "is_ensemble",
        "created_at",
    ]
    list_filter = ["kind", "stage", "is_active", "is_ensemble", "architecture"]
    search_fields = ["name", "slot"]
    # What the weights are is sync_models' to record (from the file); the admin may switch a version on
    # or off and set its threshold, and each such save is one model.changed entry in the audit trail.
    # The stage is the lifecycle commands' (register_candidate, promote_model, rollback_model): only an
    # active version can be switched on.
    readonly_fields = [
        "name",
        "slot",
        "kind",
        "stage",
        "evaluation",
        "retired_at",
        "file_path",
        "file_sha256",
        "metadata",
        "architecture",
        "encoder",
        "is_ensemble",
    ]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.stage != Stage.ACTIVE:
            fields.append("is_active")
        return fields

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

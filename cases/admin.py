from django.contrib import admin

from .models import Case, CaseDiagnosis, Diagnosis, Patient, Scan, Study


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["identifier", "created_at"]
    search_fields = ["identifier"]


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    list_display = ["id", "original_filename", "format", "width", "height", "uploaded_by", "created_at"]
    list_filter = ["format"]
    search_fields = ["original_filename", "sha256"]
    readonly_fields = ["sha256", "created_at"]
    raw_id_fields = ["uploaded_by"]


class ShownNotWritten:
    """Cases and their diagnoses are written only through the record's services (the pages and the API),
    which check the case's revision and write the audit trail; the admin site shows them. Without this the
    admin role's permissions to upload and to add or remove diagnoses would apply here unaudited."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class CaseDiagnosisInline(ShownNotWritten, admin.TabularInline):
    model = CaseDiagnosis
    extra = 0
    raw_id_fields = ["diagnosis", "recorded_by"]


@admin.register(Case)
class CaseAdmin(ShownNotWritten, admin.ModelAdmin):
    list_display = [
        "id",
        "patient",
        "tumour_type",
        "tumour_type_source",
        "mask_source",
        "source_ref",
        "created_at",
    ]
    list_filter = ["tumour_type", "tumour_type_source", "mask_source"]
    search_fields = ["patient__identifier", "source_ref", "notes"]
    list_select_related = ["patient"]
    raw_id_fields = ["patient", "study", "scan", "created_by", "mask_updated_by"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [CaseDiagnosisInline]


@admin.register(Study)
class StudyAdmin(ShownNotWritten, admin.ModelAdmin):
    """Studies are made by the uploads (a DICOM study by its UID's keyed pseudonym): shown, not edited,
    since a changed patient or pseudonym would split or merge what the files say belongs together."""

    list_display = ["id", "patient", "study_date", "modality", "uid_pseudonym", "created_at"]
    list_filter = ["modality"]
    search_fields = ["patient__identifier", "uid_pseudonym"]
    list_select_related = ["patient"]
    readonly_fields = ["patient", "uid_pseudonym", "study_date", "modality", "created_at"]


@admin.register(Diagnosis)
class DiagnosisAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "tumour_type", "added_automatically", "retired_at", "created_at"]
    list_filter = ["tumour_type", "added_automatically"]
    search_fields = ["name", "key"]
    raw_id_fields = ["first_case", "created_by"]
    # Renaming, retiring and merging keep the catalogue's rules and are audited only through the entry's
    # page (Curate): here they are shown, not edited.
    readonly_fields = ["name", "key", "retired_at", "merged_into"]


@admin.register(CaseDiagnosis)
class CaseDiagnosisAdmin(ShownNotWritten, admin.ModelAdmin):
    list_display = ["case", "diagnosis", "recorded_by", "recorded_at"]
    raw_id_fields = ["case", "diagnosis", "recorded_by"]

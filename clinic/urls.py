"""The clinician's pages (HTML), mounted at the site's root. Every view here requires a signed-in user."""

from django.urls import path, register_converter

from clinic.views import cases, catalogue, diagnoses, masks, patients, pictures, runs


class MaskFormat:
    """A mask download's format: PNG, gzipped NIfTI, or DICOM Segmentation (DICOM cases only)."""

    regex = "png|nii\\.gz|dcm"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MaskFormat, "maskfmt")

urlpatterns = [
    path("", cases.case_list_view, name="case-list"),
    path("upload/", cases.upload_view, name="upload"),
    path("cases/<int:case_id>/", cases.case_detail_view, name="case-detail"),
    path("cases/<int:case_id>/state.json", cases.case_state_view, name="case-state"),
    path("cases/<int:case_id>/slice.png", pictures.case_slice_view, name="case-slice"),
    path("cases/<int:case_id>/pixels.f32", pictures.case_pixels_view, name="case-pixels"),
    path("cases/<int:case_id>/thumbnail.png", pictures.case_thumbnail_view, name="case-thumbnail"),
    path("cases/<int:case_id>/overlay.png", pictures.case_overlay_view, name="case-overlay"),
    path("cases/<int:case_id>/best-mask.png", pictures.case_best_mask_view, name="case-best-mask"),
    path(
        "cases/<int:case_id>/other-regions/<int:rank>.png",
        pictures.case_other_region_view,
        name="case-other-region",
    ),
    path("cases/<int:case_id>/mask.<maskfmt:fmt>", pictures.case_mask_view, name="case-mask"),
    path(
        "cases/<int:case_id>/masks/<int:number>.<maskfmt:fmt>",
        masks.case_mask_version_view,
        name="case-mask-version",
    ),
    path(
        "cases/<int:case_id>/masks/<int:number>/restore/",
        masks.case_mask_restore_view,
        name="case-mask-restore",
    ),
    path(
        "cases/<int:case_id>/runs/<int:run_id>/mask.<maskfmt:fmt>",
        runs.run_mask_view,
        name="run-mask",
    ),
    path(
        "cases/<int:case_id>/runs/<int:run_id>/probability.png",
        pictures.run_probability_view,
        name="run-probability",
    ),
    path("cases/<int:case_id>/correct/", cases.case_correct_view, name="case-correct"),
    path("cases/<int:case_id>/tumour-type/", cases.case_tumour_type_view, name="case-tumour-type"),
    path("cases/<int:case_id>/diagnoses/", diagnoses.case_diagnosis_add_view, name="case-diagnosis-add"),
    path(
        "cases/<int:case_id>/diagnoses/<int:diagnosis_id>/remove/",
        diagnoses.case_diagnosis_remove_view,
        name="case-diagnosis-remove",
    ),
    path("cases/<int:case_id>/similar/", cases.case_similar_view, name="case-similar"),
    path("cases/<int:case_id>/report/", cases.case_report_view, name="case-report"),
    path("runs/<int:run_id>/review/", runs.run_review_view, name="run-review"),
    path("patients/", patients.patient_list_view, name="patient-list"),
    path("patients/<int:patient_id>/", patients.patient_detail_view, name="patient-detail"),
    path("diagnoses/", diagnoses.diagnosis_list_view, name="diagnosis-list"),
    path("diagnoses/<int:diagnosis_id>/", diagnoses.diagnosis_detail_view, name="diagnosis-detail"),
    path("diagnoses/<int:diagnosis_id>/rename/", catalogue.diagnosis_rename_view, name="diagnosis-rename"),
    path("diagnoses/<int:diagnosis_id>/retire/", catalogue.diagnosis_retire_view, name="diagnosis-retire"),
    path("diagnoses/<int:diagnosis_id>/merge/", catalogue.diagnosis_merge_view, name="diagnosis-merge"),
]

"""The clinician's pages (HTML). Every view here requires a signed-in user."""

from django.urls import path, register_converter

from clinic.views import cases as case_views
from clinic.views import diagnoses as recommender_views
from clinic.views import runs as segmentation_views


class MaskFormat:
    regex = "png|nii\\.gz"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MaskFormat, "maskfmt")

urlpatterns = [
    path("", case_views.case_list_view, name="case-list"),
    path("upload/", case_views.upload_view, name="upload"),
    path("cases/<int:case_id>/", case_views.case_detail_view, name="case-detail"),
    path("cases/<int:case_id>/state.json", case_views.case_state_view, name="case-state"),
    path("cases/<int:case_id>/slice.png", case_views.case_slice_view, name="case-slice"),
    path("cases/<int:case_id>/thumbnail.png", case_views.case_thumbnail_view, name="case-thumbnail"),
    path("cases/<int:case_id>/overlay.png", case_views.case_overlay_view, name="case-overlay"),
    path("cases/<int:case_id>/best-mask.png", case_views.case_best_mask_view, name="case-best-mask"),
    path("cases/<int:case_id>/mask.<maskfmt:fmt>", case_views.case_mask_view, name="case-mask"),
    path(
        "cases/<int:case_id>/runs/<int:run_id>/mask.<maskfmt:fmt>",
        segmentation_views.run_mask_view,
        name="run-mask",
    ),
    path("cases/<int:case_id>/correct/", case_views.case_correct_view, name="case-correct"),
    path("cases/<int:case_id>/tumour-type/", case_views.case_tumour_type_view, name="case-tumour-type"),
    path(
        "cases/<int:case_id>/diagnoses/", recommender_views.case_diagnosis_add_view, name="case-diagnosis-add"
    ),
    path("cases/<int:case_id>/similar/", case_views.case_similar_view, name="case-similar"),
    path("cases/<int:case_id>/report/", case_views.case_report_view, name="case-report"),
    path("runs/<int:run_id>/review/", segmentation_views.run_review_view, name="run-review"),
    path("patients/", case_views.patient_list_view, name="patient-list"),
    path("patients/<int:patient_id>/", case_views.patient_detail_view, name="patient-detail"),
    path("diagnoses/", recommender_views.diagnosis_list_view, name="diagnosis-list"),
    path("diagnoses/<int:diagnosis_id>/", recommender_views.diagnosis_detail_view, name="diagnosis-detail"),
]

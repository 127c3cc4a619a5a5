"""REST API routes (``/api/...``). Every endpoint but the token one needs an authenticated user."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import IsAuthenticated

from cases.apis import CaseDetailApi, CaseListApi, CaseThumbnailApi
from recommender.apis import CaseDiagnosisCreateApi, DiagnosisListApi, SimilarCasesApi
from segmentation.apis import SegmentationFileApi, SegmentationReviewApi

app_name = "api"

urlpatterns = [
    path("auth/token/", ObtainAuthToken.as_view(), name="auth-token"),
    path("cases/", CaseListApi.as_view(), name="case-list"),
    path("cases/<int:case_id>/", CaseDetailApi.as_view(), name="case-detail"),
    path("cases/<int:case_id>/thumbnail.png", CaseThumbnailApi.as_view(), name="case-thumbnail"),
    path("cases/<int:case_id>/similar/", SimilarCasesApi.as_view(), name="case-similar"),
    path("cases/<int:case_id>/diagnoses/", CaseDiagnosisCreateApi.as_view(), name="case-diagnoses"),
    path("segmentations/<int:run_id>/review/", SegmentationReviewApi.as_view(), name="segmentation-review"),
    re_path(
        r"^segmentations/(?P<run_id>[0-9]+)/(?P<kind>mask|probability)\.png$",
        SegmentationFileApi.as_view(),
        name="segmentation-file",
    ),
    path("diagnoses/", DiagnosisListApi.as_view(), name="diagnosis-list"),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[IsAuthenticated]),
        name="docs",
    ),
]

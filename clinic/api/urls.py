"""REST API routes (``/api/...``). Every endpoint but the token one needs a role that allows it
(``required_permissions``, checked by ``clinic.permissions.RolePermission``)."""

from django.urls import path, re_path, register_converter
from django.urls.converters import IntConverter
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import NotFound
from rest_framework.views import APIView

from clinic.api.auth import AuthTokenApi
from clinic.api.cases import CaseDetailApi, CaseListApi, CaseThumbnailApi
from clinic.api.diagnoses import CaseDiagnosisCreateApi, CaseDiagnosisDeleteApi, DiagnosisListApi
from clinic.api.masks import (
    CaseMaskDicomApi,
    MaskVersionDicomApi,
    MaskVersionFileApi,
    MaskVersionListApi,
    MaskVersionRestoreApi,
)
from clinic.api.regions import OtherRegionFileApi, OtherRegionListApi
from clinic.api.runs import SegmentationDicomApi, SegmentationFileApi, SegmentationReviewApi
from clinic.api.similar import SimilarCasesApi
from clinic.permissions import RolePermission

app_name = "api"


class RowIdConverter(IntConverter):
    """``<id:...>``: a row's id, at most 18 digits so that it fits the database's 64-bit integer. A longer
    number names no row, and is a 404 here: looked up through a foreign key it would be an error (Django
    checks the range of a primary key's value, not of a foreign key's; SQLite raises OverflowError)."""

    regex = "[0-9]{1,18}"


register_converter(RowIdConverter, "id")


@extend_schema(exclude=True)
class NoEndpointApi(APIView):
    """Any other address under /api/: a 404 in the API's error shape rather than the site's HTML page."""

    # A reader learns only that nothing is here; an account without a role is refused as everywhere.
    required_permissions = dict.fromkeys(("GET", "POST", "PUT", "PATCH", "DELETE"), "cases.view_case")

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise NotFound("There is no API endpoint at this address.")

    options = http_method_not_allowed


class SchemaApi(SpectacularAPIView):
    """The OpenAPI schema, for anyone who may read cases (drf-spectacular's own views serve it to all)."""

    permission_classes = [RolePermission]
    required_permissions = {"GET": "cases.view_case"}


class SchemaDocsApi(SpectacularSwaggerView):
    permission_classes = [RolePermission]
    required_permissions = {"GET": "cases.view_case"}


urlpatterns = [
    path("auth/token/", AuthTokenApi.as_view(), name="auth-token"),
    path("cases/", CaseListApi.as_view(), name="case-list"),
    path("cases/<id:case_id>/", CaseDetailApi.as_view(), name="case-detail"),
    path("cases/<id:case_id>/thumbnail.png", CaseThumbnailApi.as_view(), name="case-thumbnail"),
    path("cases/<id:case_id>/similar/", SimilarCasesApi.as_view(), name="case-similar"),
    path("cases/<id:case_id>/masks/", MaskVersionListApi.as_view(), name="case-masks"),
    path("cases/<id:case_id>/masks/<int:number>.png", MaskVersionFileApi.as_view(), name="case-mask-version"),
    path(
        "cases/<id:case_id>/masks/<int:number>.dcm",
        MaskVersionDicomApi.as_view(),
        name="case-mask-version-dicom",
    ),
    path("cases/<id:case_id>/mask.dcm", CaseMaskDicomApi.as_view(), name="case-mask-dicom"),
    path(
        "cases/<id:case_id>/masks/<int:number>/restore/",
        MaskVersionRestoreApi.as_view(),
        name="case-mask-restore",
    ),
    path("cases/<id:case_id>/other-regions/", OtherRegionListApi.as_view(), name="case-other-regions"),
    path(
        "cases/<id:case_id>/other-regions/<int:rank>.png",
        OtherRegionFileApi.as_view(),
        name="case-other-region",
    ),
    path("cases/<id:case_id>/diagnoses/", CaseDiagnosisCreateApi.as_view(), name="case-diagnoses"),
    path(
        "cases/<id:case_id>/diagnoses/<id:diagnosis_id>/",
        CaseDiagnosisDeleteApi.as_view(),
        name="case-diagnosis",
    ),
    path("segmentations/<id:run_id>/review/", SegmentationReviewApi.as_view(), name="segmentation-review"),
    re_path(
        rf"^segmentations/(?P<run_id>{RowIdConverter.regex})/(?P<kind>mask|probability)\.png$",
        SegmentationFileApi.as_view(),
        name="segmentation-file",
    ),
    path("segmentations/<id:run_id>/mask.dcm", SegmentationDicomApi.as_view(), name="segmentation-dicom"),
    path("diagnoses/", DiagnosisListApi.as_view(), name="diagnosis-list"),
    path("schema/", SchemaApi.as_view(), name="schema"),
    path("docs/", SchemaDocsApi.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^", NoEndpointApi.as_view(), name="no-endpoint"),
]

"""REST endpoints for cases: upload, list, detail, thumbnail (thin: serializers + services/selectors)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import rendering
from cases.models import Case, TumourType
from cases.readers import ImageReadError
from cases.review import case_tumour_type_set
from cases.selectors import case_get, case_list
from cases.services import DuplicateUpload, case_uploads_read
from cases.validators import patient_identifier_validate
from clinic.api.authentication import UploadRateThrottle
from clinic.api.errors import PROBLEM_CONTENT_TYPE, Conflict, ContentTooLarge, ProblemSerializer
from clinic.api.revisions import etag_header, etag_parameters, if_match_revision, with_case_etag
from clinic.api.runs import SegmentationRunOutputSerializer
from clinic.api.schema import PNG, paged, problem_responses
from clinic.uploads import upload_record
from recommender.models import AnalysisStatus
from recommender.selectors import case_analysis
from segmentation.selectors import case_processing_status, case_runs


class CaseDiagnosisOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="diagnosis.id")
    name = serializers.CharField(source="diagnosis.name")
    added_automatically = serializers.BooleanField(source="diagnosis.added_automatically")
    recorded_by = serializers.CharField(source="recorded_by.username", default=None)
    recorded_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="TypeVoter")
class VoterSerializer(serializers.Serializer):
    case = serializers.IntegerField()
    tumour_type = serializers.CharField()
    distance = serializers.FloatField()


@extend_schema_serializer(component_name="TypeSources")
class TypeSourcesSerializer(serializers.Serializer):
    similar_cases = serializers.DictField(
        child=serializers.FloatField(), required=False, help_text="the similar cases' vote: {type: share}"
    )
    classifier = serializers.DictField(
        child=serializers.FloatField(),
        allow_null=True,
        required=False,
        help_text="the type classifier's {type: probability}; null when it had no say",
    )
    classifier_weight = serializers.FloatField(required=False)
    classifier_version = serializers.CharField(
        allow_null=True,
        required=False,
        help_text="the classifier version that gave those probabilities: its slot and the first 12 hex "
        "digits of its weights' SHA-256 (type_classifier@hash), as a mask names its model version; null "
        "when it had no say",
    )
    neighbours = VoterSerializer(
        many=True,
        required=False,
        help_text="the similar cases that voted, nearest first; the case page's similar-cases panel shows "
        "these while the type is a suggestion",
    )


@extend_schema_serializer(component_name="CaseAnalysis")
class CaseAnalysisSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=AnalysisStatus.choices,
        help_text="tumour: outlined, so a type suggestion and similar cases follow; no_tumour or "
        "not_brain_mri: neither is given (docs/models.md, 'Honest results')",
    )
    message = serializers.CharField(source="get_status_display")
    flags = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        help_text="outlier warnings on the AI outline: [{code, message}]",
    )


def _case_status(case: Case) -> str:
    return case_processing_status(list(case.segmentation_runs.all()))


@extend_schema_serializer(component_name="DuplicateOf")
class DuplicateOfSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the case that already has this file")
    url = serializers.CharField(help_text="that case in the API")
    page = serializers.CharField(help_text="that case's page")


@extend_schema_serializer(component_name="DuplicateProblem")
class DuplicateProblemSerializer(ProblemSerializer):
    duplicate_of = DuplicateOfSerializer()


class DuplicateUploadConflict(Conflict):
    """409: the upload is a file some case already has; the problem names it in ``duplicate_of``."""

    def __init__(self, exc: DuplicateUpload, request):
        super().__init__(str(exc))
        self.problem_extensions = {
            "duplicate_of": {
                "id": exc.case.pk,
                "url": request.build_absolute_uri(reverse("api:case-detail", args=[exc.case.pk])),
                "page": reverse("case-detail", args=[exc.case.pk]),
            }
        }


class CaseListApi(GenericAPIView):
    """``GET``: cases, newest first, paginated. ``POST``: upload a slice; the segmentations start at once."""

    required_permissions = {"GET": "cases.view_case", "POST": "cases.add_case"}

    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [UploadRateThrottle]  # POST only, per user

    @extend_schema_serializer(component_name="CaseFilter")
    class FilterSerializer(serializers.Serializer):
        # An empty value is no filter, as a query string from a form with nothing chosen has it.
        tumour_type = serializers.ChoiceField(choices=TumourType.choices, required=False, allow_blank=True)
        patient = serializers.CharField(required=False, allow_blank=True)

    @extend_schema_serializer(component_name="CaseInput")
    class InputSerializer(serializers.Serializer):
        # No length limit on the name: it is never used to name the stored file (issue #31, item 4).
        image = serializers.FileField(max_length=None)
        patient = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=64,
            validators=[patient_identifier_validate],
            help_text="a pseudonymous code (e.g. BT-0042), never a name, a date or a hospital number; "
            "empty: a DICOM file's patient is linked by a keyed pseudonym of its PatientID",
        )
        tumour_type = serializers.ChoiceField(choices=TumourType.choices, required=False, allow_blank=True)
        force = serializers.BooleanField(
            required=False,
            default=False,
            help_text="record the file even if the same file is already a case (else a 409 names that case)",
        )

    @extend_schema_serializer(component_name="CaseOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.SerializerMethodField()
        patient = serializers.CharField(source="patient.identifier")
        tumour_type = serializers.CharField(allow_null=True)
        tumour_type_source = serializers.CharField(allow_null=True)
        created_at = serializers.DateTimeField()

        def get_status(self, case) -> str:
            return _case_status(case)

    @extend_schema(
        parameters=[FilterSerializer],
        responses={**paged(OutputSerializer(many=True)), **problem_responses(400, 404)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        cases = (
            case_list(
                tumour_type=filters.validated_data.get("tumour_type") or None,
                patient_identifier=filters.validated_data.get("patient") or None,
            )
            .prefetch_related("segmentation_runs")
            .order_by("-created_at", "-id")
        )
        page = self.paginate_queryset(cases)
        return self.get_paginated_response(self.OutputSerializer(page, many=True).data)

    @extend_schema_serializer(component_name="CaseCreated")
    class CreatedSerializer(serializers.Serializer):
        id = serializers.IntegerField(help_text="the (first) case made of the file")
        status = serializers.CharField()
        cases = serializers.ListField(
            child=serializers.IntegerField(),
            help_text="every case made of the file, in slice order: one per frame of a multi-frame DICOM",
        )
        study = serializers.IntegerField(allow_null=True, help_text="the study the cases joined or started")

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={
            201: CreatedSerializer,
            **problem_responses(400, 413, 415, 429),
            (409, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                DuplicateProblemSerializer,
                description="The same file is already a case (duplicate_of); force=true records it again",
            ),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        image_file = data["image"]
        limit_mb = settings.TUMORSITE_MAX_UPLOAD_MB
        if image_file.size > limit_mb * 1024 * 1024:
            raise ContentTooLarge(
                f"The file is too large ({image_file.size / 1024 / 1024:.1f} MB); the limit is {limit_mb} MB."
            )
        try:
            # Read and decode before the transaction: the write lock is held for the rows only.
            uploads = case_uploads_read(image_file=image_file, filename=image_file.name or "")
            recorded = upload_record(
                uploads=uploads,
                user=request.user,
                patient_identifier=data.get("patient") or None,
                tumour_type=data.get("tumour_type") or None,
                force=data["force"],
            )
        except DuplicateUpload as exc:
            raise DuplicateUploadConflict(exc, request) from exc
        except (ImageReadError, ValueError) as exc:
            raise ValidationError({"image": [str(exc)]}) from exc
        first = recorded.cases[0]
        created = {
            "id": first.pk,
            "status": case_processing_status(recorded.runs),
            "cases": [case.pk for case in recorded.cases],
            "study": first.study_id,
        }
        return Response(self.CreatedSerializer(created).data, status=status.HTTP_201_CREATED)


class CaseDetailApi(APIView):
    """``GET``: one case, with its revision as the ETag. ``PATCH``: record its tumour type (a clinician's
    choice); send the ETag back in If-Match to be refused (409) rather than overwrite a later edit."""

    required_permissions = {"GET": "cases.view_case", "PATCH": "cases.set_tumour_type"}

    @extend_schema_serializer(component_name="CaseDetailOutput")
    class OutputSerializer(CaseListApi.OutputSerializer):
        predicted_tumour_type = serializers.CharField(allow_null=True)
        predicted_confidence = serializers.FloatField(allow_null=True)
        predicted_type_sources = TypeSourcesSerializer(
            allow_null=True, help_text="what the suggested type was made of; null until there is one"
        )
        width = serializers.IntegerField(source="scan.width")
        height = serializers.IntegerField(source="scan.height")
        thumbnail_url = serializers.SerializerMethodField()
        has_ground_truth = serializers.SerializerMethodField()
        segmentations = serializers.SerializerMethodField()
        diagnoses = CaseDiagnosisOutputSerializer(source="case_diagnoses", many=True)
        notes = serializers.CharField()
        analysis = serializers.SerializerMethodField()

        @extend_schema_field(CaseAnalysisSerializer(allow_null=True))
        def get_analysis(self, case) -> dict | None:
            """Null until the case is analysed, or while it has no usable outline (a rejected mask)."""
            row = case_analysis(case)
            return None if row is None else CaseAnalysisSerializer(row).data

        def get_thumbnail_url(self, case) -> str:
            return thumbnail_url(self.context["request"], case.pk)

        def get_has_ground_truth(self, case) -> bool:
            return bool(case.ground_truth_mask)

        @extend_schema_field(SegmentationRunOutputSerializer(many=True))
        def get_segmentations(self, case) -> list:
            return SegmentationRunOutputSerializer(case_runs(case=case), many=True, context=self.context).data

    @extend_schema_serializer(component_name="CaseUpdateInput")
    class UpdateSerializer(serializers.Serializer):
        tumour_type = serializers.ChoiceField(
            choices=TumourType.choices, help_text="the clinician's type; recorded with source 'clinician'"
        )

    @extend_schema(parameters=[etag_header(200)], responses={200: OutputSerializer, **problem_responses(404)})
    def get(self, request, case_id: int):
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        return with_case_etag(Response(self.OutputSerializer(case, context={"request": request}).data), case)

    @extend_schema(
        request=UpdateSerializer,
        parameters=etag_parameters(200, 409),
        responses={200: OutputSerializer, **problem_responses(400, 404, 409, 415)},
    )
    def patch(self, request, case_id: int):
        serializer = self.UpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        case_tumour_type_set(
            case=case,
            tumour_type=serializer.validated_data["tumour_type"],
            user=request.user,
            expected_revision=if_match_revision(request),
        )
        return with_case_etag(Response(self.OutputSerializer(case, context={"request": request}).data), case)


def thumbnail_url(request, case_id: int) -> str:
    return request.build_absolute_uri(reverse("api:case-thumbnail", args=[case_id]))


class CaseThumbnailApi(APIView):
    """A small PNG of the slice (any stored format, DICOM included), for result lists."""

    required_permissions = {"GET": "cases.view_case"}

    @extend_schema(
        operation_id="cases_thumbnail_retrieve",
        responses={(200, "image/png"): PNG, **problem_responses(404)},
    )
    def get(self, request, case_id: int):
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        picture = rendering.thumbnail(rendering.slice_uint8(case), None)
        response = HttpResponse(rendering.png_bytes(picture), content_type="image/png")
        response["Cache-Control"] = "private, max-age=3600"
        return response

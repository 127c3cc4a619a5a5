"""REST endpoints of the segmentation runs: the clinician's review and the stored PNGs."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.api.errors import Conflict
from clinic.api.schema import PNG, SEG_DESCRIPTION, SEG_RESPONSES, problem_responses
from clinic.downloads import mask_segmentation_download
from segmentation.models import SegmentationRun
from segmentation.selectors import load_mask, run_mask_origin
from segmentation.services import (
    REVIEW_REASON_MAX_LENGTH,
    SegmentationError,
    primary_model_version,
    segmentation_run_review,
)

RUN_FILES = {"mask": "mask_file", "probability": "probability_file"}


class RequiredBooleanField(serializers.BooleanField):
    """A boolean a form body must send too. DRF reads one missing from a form as false (an unticked
    checkbox): a review without ``validated`` would have rejected the mask."""

    default_empty_html = empty


def _url(request, run, kind: str) -> str | None:
    """The authenticated API address of a run's stored PNG (media files are not served publicly)."""
    if not getattr(run, RUN_FILES[kind]):
        return None
    url = reverse("api:segmentation-file", kwargs={"run_id": run.pk, "kind": kind})
    return request.build_absolute_uri(url) if request is not None else url


class SegmentationRunOutputSerializer(serializers.Serializer):
    """One model's segmentation of a case; shared with the case detail endpoint."""

    id = serializers.IntegerField()
    model = serializers.CharField(source="model_version.name")
    is_ensemble = serializers.BooleanField(source="model_version.is_ensemble")
    is_primary = serializers.SerializerMethodField()
    status = serializers.CharField()
    error = serializers.CharField()
    attempts = serializers.IntegerField()
    mask_url = serializers.SerializerMethodField()
    probability_url = serializers.SerializerMethodField()
    area_px = serializers.IntegerField(allow_null=True)
    area_mm2 = serializers.FloatField(allow_null=True)
    bbox = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    centroid = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    runtime_ms = serializers.FloatField(allow_null=True)
    weights = serializers.CharField(
        help_text="the exact weights that made the mask: name@sha256[:12] "
        "(the ensemble lists its members'); empty until the run is done"
    )
    agreement = serializers.FloatField(
        allow_null=True,
        help_text="ensemble only: mean Dice between every pair of its members' masks (1: they "
        "outline the same pixels); null for a single model or an unfinished run",
    )
    agreement_flagged = serializers.BooleanField(
        allow_null=True,
        help_text="ensemble only: true when the agreement is below the level chosen on the "
        "validation split to flag doubtful masks (python -m ml.agreement); null "
        "when no level is stored",
    )
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    review_status = serializers.CharField()
    review_reason = serializers.CharField(
        help_text="the reviewer's reason for the decision (may be empty, e.g. for a validation)"
    )

    def get_is_primary(self, run) -> bool:
        primary = self.context.get("primary_model_id")
        if primary is None:
            version = primary_model_version()
            primary = self.context["primary_model_id"] = version.pk if version else -1
        return run.model_version_id == primary

    def get_mask_url(self, run) -> str | None:
        return _url(self.context.get("request"), run, "mask")

    def get_probability_url(self, run) -> str | None:
        return _url(self.context.get("request"), run, "probability")


class SegmentationReviewApi(APIView):
    """A reviewer validates or rejects an AI mask, optionally with a reason; a validated mask brings the case
    into the case base."""

    required_permissions = {"POST": "segmentation.review_segmentationrun"}

    @extend_schema_serializer(component_name="SegmentationReviewInput")
    class InputSerializer(serializers.Serializer):
        validated = RequiredBooleanField()
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=REVIEW_REASON_MAX_LENGTH,
            help_text="optional: why the mask was rejected (or validated); kept with the review",
        )

    @extend_schema(
        request=InputSerializer,
        responses={200: SegmentationRunOutputSerializer, **problem_responses(400, 404, 409, 415)},
    )
    def post(self, request, run_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = get_object_or_404(SegmentationRun.objects.select_related("case", "model_version"), pk=run_id)
        try:
            run = segmentation_run_review(
                run=run,
                user=request.user,
                validated=serializer.validated_data["validated"],
                reason=serializer.validated_data["reason"],
            )
        except SegmentationError as exc:
            raise Conflict(str(exc)) from exc
        return Response(SegmentationRunOutputSerializer(run, context={"request": request}).data)


class SegmentationFileApi(APIView):
    """A run's mask (0/255) or probability map (0-255 = 0.0-1.0) as the PNG that was stored."""

    required_permissions = {"GET": "segmentation.view_segmentationrun"}

    @extend_schema(
        operation_id="segmentations_file_retrieve",
        # The route is a regular expression; drf-spectacular copies "mask|probability" into a pattern
        # without its group, which would also allow "maskXYZ".
        parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=list(RUN_FILES))],
        responses={(200, "image/png"): PNG, **problem_responses(404)},
    )
    def get(self, request, run_id: int, kind: str):
        run = get_object_or_404(SegmentationRun, pk=run_id)
        field_file = getattr(run, RUN_FILES[kind])
        if not field_file:
            raise Http404("This run has no stored output (yet).")
        with field_file.open("rb") as fh:
            response = HttpResponse(fh.read(), content_type="image/png")
        response["Content-Disposition"] = f'inline; filename="run{run.pk}_{kind}.png"'
        response["Cache-Control"] = "private, max-age=3600"
        return response


class SegmentationDicomApi(APIView):
    """A run's mask as a DICOM Segmentation (AUTOMATIC, naming the model version and its exact weights)."""

    required_permissions = {"GET": "segmentation.view_segmentationrun"}

    @extend_schema(
        operation_id="segmentations_dicom_retrieve",
        description=SEG_DESCRIPTION + " 404 also while the run has no mask.",
        responses=SEG_RESPONSES,
    )
    def get(self, request, run_id: int):
        run = get_object_or_404(
            SegmentationRun.objects.select_related("case__scan", "model_version"), pk=run_id
        )
        response = mask_segmentation_download(
            run.case,
            load_mask(run),
            origin=run_mask_origin(run),
            filename=f"case{run.case_id}_{run.model_version.name}_mask_seg.dcm",
        )
        response["Cache-Control"] = "private, max-age=3600"  # a finished run's mask never changes
        return response

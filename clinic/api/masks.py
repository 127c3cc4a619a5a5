"""REST endpoints of a case's mask versions: the history, any version's PNG (and, for a DICOM case, its
DICOM Segmentation), a new version, a restore.

Versions are only ever added (``cases.review``): a new outline or a restore makes the next version, and
every earlier one stays downloadable. Both writes take the case's ETag in If-Match (``clinic.api.revisions``)
and answer with the new one.
"""

from __future__ import annotations

import io

import numpy as np
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from PIL import Image, UnidentifiedImageError
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import rendering
from cases.models import Case, MaskVersion
from cases.review import MaskVersionInUse, case_mask_correct, case_mask_restore
from cases.selectors import (
    case_get,
    case_ground_truth_mask,
    case_mask_version_get,
    case_mask_versions,
    mask_version_mask,
)
from clinic.api.errors import Conflict
from clinic.api.revisions import etag_parameters, if_match_revision, with_case_etag
from clinic.api.schema import PNG, SEG_DESCRIPTION, SEG_RESPONSES, paged, problem_responses
from clinic.browse import area_mm2_of
from clinic.downloads import mask_segmentation_download


@extend_schema_serializer(component_name="MaskVersion")
class MaskVersionOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField(
        help_text="1, 2, ... within the case; version 1 of an imported case is the dataset's expert mask"
    )
    source = serializers.CharField(help_text="imported, corrected or restored")
    source_label = serializers.CharField(source="get_source_display")
    restored_from = serializers.IntegerField(
        source="restored_from.number", allow_null=True, default=None, help_text="the version a restore copied"
    )
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    area_px = serializers.IntegerField(allow_null=True)
    area_mm2 = serializers.SerializerMethodField(help_text="null when the scan has no pixel spacing")
    in_use = serializers.SerializerMethodField(help_text="the case's outline now (its ground truth)")
    feeds_case_base = serializers.SerializerMethodField(
        help_text="in use, and the case is in the similar-case base: this outline describes it there"
    )
    png_url = serializers.SerializerMethodField()

    def get_area_mm2(self, version: MaskVersion) -> float | None:
        return area_mm2_of(self.context["case"], version.area_px)

    def get_in_use(self, version: MaskVersion) -> bool:
        return version.pk == self.context["case"].mask_version_id

    def get_feeds_case_base(self, version: MaskVersion) -> bool:
        return self.get_in_use(version) and self.context["case"].in_case_base

    def get_png_url(self, version: MaskVersion) -> str:
        url = reverse("api:case-mask-version", args=[version.case_id, version.number])
        return self.context["request"].build_absolute_uri(url)


def _case_or_404(case_id: int) -> Case:
    case = case_get(case_id=case_id)
    if case is None:
        raise Http404
    return case


def _version_or_404(case: Case, number: int) -> MaskVersion:
    version = case_mask_version_get(case=case, number=number)
    if version is None:
        raise Http404(f"Case {case.pk} has no mask version {number}.")
    return version


def _created(request, case: Case) -> Response:
    """201 with the version now in use, its address and the case's new ETag."""
    data = MaskVersionOutputSerializer(case.mask_version, context={"request": request, "case": case}).data
    response = Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["png_url"]})
    return with_case_etag(response, case)


def mask_from_upload(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask from an uploaded grayscale PNG holding 0 (background) and 255 (tumour) only, at the
    slice's size. Raises ValueError with a plain message otherwise."""
    try:
        picture = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError("The mask could not be read: send a PNG picture.") from exc
    if picture.format != "PNG":
        raise ValueError(f"The mask is a {picture.format} picture: send a PNG.")
    # The header gives the size: a wrong (or huge) picture is refused before it is decoded.
    if (picture.height, picture.width) != tuple(shape):
        raise ValueError(
            f"The mask is {picture.width}x{picture.height}; the slice is {shape[1]}x{shape[0]}: "
            "send it at the slice's size."
        )
    try:
        values = np.asarray(picture.convert("L"))
    except OSError as exc:
        raise ValueError("The mask PNG is damaged and could not be decoded.") from exc
    stray = np.setdiff1d(np.unique(values), [0, 255])
    if stray.size:
        shown = ", ".join(str(int(v)) for v in stray[:5])
        raise ValueError(
            f"The mask must hold only 0 (background) and 255 (tumour); it also holds {shown}"
            f"{' and more' if stray.size > 5 else ''}."
        )
    return values == 255


class MaskVersionListApi(GenericAPIView):
    """``GET``: the case's mask versions, oldest first, paginated. ``POST``: a new outline (a clinician's
    correction) as the next version, which becomes the case's ground truth."""

    required_permissions = {"GET": "cases.view_case", "POST": "cases.correct_mask"}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="MaskVersionInput")
    class InputSerializer(serializers.Serializer):
        mask = serializers.FileField(
            help_text="a grayscale PNG at the slice's size: 255 where the tumour is, 0 elsewhere"
        )

    @extend_schema(
        operation_id="cases_masks_list",
        responses={**paged(MaskVersionOutputSerializer(many=True)), **problem_responses(400, 404)},
    )
    def get(self, request, case_id: int):
        case = _case_or_404(case_id)
        page = self.paginate_queryset(case_mask_versions(case=case))
        context = {"request": request, "case": case}
        return self.get_paginated_response(MaskVersionOutputSerializer(page, many=True, context=context).data)

    @extend_schema(
        operation_id="cases_masks_create",
        request={"multipart/form-data": InputSerializer},
        parameters=etag_parameters(201, 409),
        responses={201: MaskVersionOutputSerializer, **problem_responses(400, 404, 409, 415)},
    )
    def post(self, request, case_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = _case_or_404(case_id)
        expected = if_match_revision(request)
        try:
            mask = mask_from_upload(
                serializer.validated_data["mask"].read(), (case.scan.height, case.scan.width)
            )
            case_mask_correct(case=case, mask=mask, user=request.user, expected_revision=expected)
        except ValueError as exc:
            raise ValidationError({"mask": [str(exc)]}) from exc
        return _created(request, case)


class MaskVersionFileApi(APIView):
    """One mask version as a 0/255 PNG, in use or not (the imported expert mask included)."""

    required_permissions = {"GET": "cases.view_case"}

    @extend_schema(
        operation_id="cases_masks_png_retrieve",
        responses={(200, "image/png"): PNG, **problem_responses(404)},
    )
    def get(self, request, case_id: int, number: int):
        case = _case_or_404(case_id)
        version = _version_or_404(case, number)
        response = HttpResponse(
            rendering.mask_png_bytes(mask_version_mask(version=version)), content_type="image/png"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="case{case.pk}_mask_v{version.number}_{version.source}.png"'
        )
        # A version never changes once stored.
        response["Cache-Control"] = "private, max-age=3600"
        return response


class MaskVersionDicomApi(APIView):
    """One mask version as a DICOM Segmentation (MANUAL: a clinician's or the dataset expert's outline)."""

    required_permissions = {"GET": "cases.view_case"}

    @extend_schema(
        operation_id="cases_masks_dicom_retrieve",
        description=SEG_DESCRIPTION,
        responses=SEG_RESPONSES,
    )
    def get(self, request, case_id: int, number: int):
        case = _case_or_404(case_id)
        version = _version_or_404(case, number)
        response = mask_segmentation_download(
            case,
            mask_version_mask(version=version),
            origin=rendering.mask_version_origin(version),
            filename=f"case{case.pk}_mask_v{version.number}_{version.source}_seg.dcm",
        )
        response["Cache-Control"] = "private, max-age=3600"  # a version never changes once stored
        return response


class CaseMaskDicomApi(APIView):
    """The case's ground-truth outline in use as a DICOM Segmentation; 404 while it has none."""

    required_permissions = {"GET": "cases.view_case"}

    @extend_schema(
        operation_id="cases_mask_dicom_retrieve",
        description=SEG_DESCRIPTION,
        responses=SEG_RESPONSES,
    )
    def get(self, request, case_id: int):
        case = _case_or_404(case_id)
        version = f"_v{case.mask_version.number}" if case.mask_version else ""
        return mask_segmentation_download(
            case,
            case_ground_truth_mask(case=case),
            origin=rendering.mask_version_origin(case.mask_version),
            filename=f"case{case.pk}_{case.mask_source or 'mask'}_mask{version}_seg.dcm",
        )


class MaskVersionRestoreApi(APIView):
    """Put an earlier version back in use: it is added again as the next version ("restored"), so the
    history keeps everything. 409 when it is already the version in use (or the If-Match is stale)."""

    required_permissions = {"POST": "cases.correct_mask"}

    @extend_schema(
        operation_id="cases_masks_restore",
        request=None,
        parameters=etag_parameters(201, 409),
        responses={201: MaskVersionOutputSerializer, **problem_responses(400, 404, 409)},
    )
    def post(self, request, case_id: int, number: int):
        case = _case_or_404(case_id)
        version = _version_or_404(case, number)
        try:
            case_mask_restore(
                case=case, version=version, user=request.user, expected_revision=if_match_revision(request)
            )
        except MaskVersionInUse as exc:
            raise Conflict(str(exc)) from exc
        return _created(request, case)

"""REST endpoints of the other regions the models saw in a case: the regions of the primary run's
probability map above its threshold that its mask left out (``clinic.browse.case_other_regions``), as the
correction page offers them. Lower confidence than the mask: a starting point for a clinician's outline."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import rendering
from clinic.api.schema import PNG, problem_responses
from clinic.browse import case_area, case_other_regions
from clinic.views.shared import case_or_404


@extend_schema_serializer(component_name="OtherRegion")
class OtherRegionSerializer(serializers.Serializer):
    rank = serializers.IntegerField(help_text="1 is the region with the highest probability")
    peak = serializers.FloatField(help_text="the highest probability in the region, 0 to 1")
    area_px = serializers.IntegerField()
    area_mm2 = serializers.FloatField(allow_null=True, help_text="null when the scan has no pixel spacing")
    png_url = serializers.CharField(help_text="the region as a 0/255 PNG at the slice's size")
    likeliest = serializers.BooleanField(
        help_text="true: the model outlined nothing and no region reached its threshold; this is the region "
        "around its map's highest point, down to half of it, lower confidence still (the only one listed)"
    )


class OtherRegionListApi(APIView):
    """The other regions the primary model saw in the case (at most three), highest probability first;
    when it outlined nothing, the region where its map was highest (``likeliest``); empty when its mask
    holds every region above its threshold, or before it is done."""

    required_permissions = {"GET": "cases.view_case"}

    @extend_schema(
        operation_id="cases_other_regions_list",
        responses={200: OtherRegionSerializer(many=True), **problem_responses(404)},
    )
    def get(self, request, case_id: int):
        case = case_or_404(case_id)
        rows = []
        for region in case_other_regions(case):
            url = reverse("api:case-other-region", args=[case.pk, region.rank])
            rows.append(
                {
                    "rank": region.rank,
                    "peak": round(region.peak, 4),
                    **case_area(case, region.mask),
                    "png_url": request.build_absolute_uri(url),
                    "likeliest": region.likeliest,
                }
            )
        return Response(OtherRegionSerializer(rows, many=True).data)


class OtherRegionFileApi(APIView):
    """One of the other regions as a 0/255 PNG at the slice's size."""

    required_permissions = {"GET": "cases.view_case"}

    @extend_schema(
        operation_id="cases_other_regions_png_retrieve",
        responses={(200, "image/png"): PNG, **problem_responses(404)},
    )
    def get(self, request, case_id: int, rank: int):
        case = case_or_404(case_id)
        regions = case_other_regions(case)
        if not 1 <= rank <= len(regions):
            raise Http404(f"Case {case.pk} has no other region {rank}.")
        response = HttpResponse(rendering.mask_png_bytes(regions[rank - 1].mask), content_type="image/png")
        response["Content-Disposition"] = f'attachment; filename="case{case.pk}_other_region_{rank}.png"'
        return response

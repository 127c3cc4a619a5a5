"""REST endpoint of the similar-case search: the ranked base cases nearest to a case."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

from cases.models import CaseDiagnosis, TumourType
from cases.selectors import case_get
from clinic.api.cases import thumbnail_url
from clinic.api.pagination import Pagination
from clinic.api.schema import paged, problem_responses
from recommender.selectors import case_results_withheld, query_for_case, similar_for_query

# How deep the ranking goes; its pages are read with ?page and ?page_size.
RANKED_MAX = 100


class RankingPagination(Pagination):
    """The API's pagination with what the ranking was made for next to the page: ``status`` ("ready", or
    "pending" while the case is not described yet) and ``query_tumour_type``."""

    page_size = 10

    def get_paginated_response_schema(self, schema: dict) -> dict:
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"] = {
            "status": {"type": "string", "enum": ["ready", "pending", "no_tumour", "not_brain_mri"]},
            "query_tumour_type": {"type": ["string", "null"]},
            **paginated["properties"],
        }
        paginated["required"] = ["status", "query_tumour_type", *paginated["required"]]
        return paginated


class SimilarCasesApi(GenericAPIView):
    """The most similar base cases (other patients only), best first, ranked as ``recommender.ranking``
    documents: ``score = 0.5 * type agreement + 0.5 * 1 / (1 + distance)``; the top 100 in pages."""

    required_permissions = {"GET": "cases.view_case"}

    pagination_class = RankingPagination

    @extend_schema_serializer(component_name="SimilarCasesFilter")
    class FilterSerializer(serializers.Serializer):
        # An empty value is no filter, as a query string from a form with nothing chosen has it.
        tumour_type = serializers.ChoiceField(choices=TumourType.choices, required=False, allow_blank=True)

    @extend_schema_serializer(component_name="SimilarCase")
    class OutputSerializer(serializers.Serializer):
        case_id = serializers.IntegerField()
        similarity = serializers.FloatField(help_text="1 / (1 + Euclidean distance of the combined vectors)")
        score = serializers.FloatField(help_text="the ranking score: type agreement and similarity")
        tumour_type = serializers.CharField(allow_null=True)
        diagnoses = serializers.ListField(child=serializers.CharField())
        thumbnail_url = serializers.CharField()
        why = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        parameters=[FilterSerializer],
        responses={**paged(OutputSerializer(many=True)), **problem_responses(400, 404)},
    )
    def get(self, request, case_id: int):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        withheld = case_results_withheld(case)  # no tumour found, or not a brain MRI slice
        query = None if withheld else query_for_case(case)
        if query is None:
            matches = []
        else:
            matches = similar_for_query(
                query, k=RANKED_MAX, tumour_type=filters.validated_data.get("tumour_type") or None
            )
        page = self.paginate_queryset(matches)
        names: dict[int, list[str]] = {}
        for case_id_, name in (
            CaseDiagnosis.objects.filter(case_id__in=[m.case_id for m in page])
            .values_list("case_id", "diagnosis__name")
            .order_by("recorded_at")
        ):
            names.setdefault(case_id_, []).append(name)
        results = [
            {
                "case_id": m.case_id,
                "similarity": round(m.similarity, 4),
                "score": round(m.score, 4),
                "tumour_type": m.tumour_type,
                "diagnoses": names.get(m.case_id, []),
                "thumbnail_url": thumbnail_url(request, m.case_id),
                "why": m.why,
            }
            for m in page
        ]
        response = self.get_paginated_response(self.OutputSerializer(results, many=True).data)
        response.data = {
            "status": withheld or ("pending" if query is None else "ready"),
            "query_tumour_type": case.tumour_type if query is None else query.tumour_type,
            **response.data,
        }
        return response

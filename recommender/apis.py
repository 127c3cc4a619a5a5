"""REST endpoints of the recommender: similar cases, recording diagnoses, diagnosis autocomplete."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cases.apis import thumbnail_url
from cases.models import CaseDiagnosis, TumourType
from cases.selectors import case_get
from recommender.selectors import diagnoses_search, query_for_case, similar_for_query
from recommender.services import diagnosis_record


class SimilarCasesApi(APIView):
    """The k most similar base cases (other patients only), ranked as ``recommender.ranking`` documents:
    ``score = 0.5 * type agreement + 0.5 * 1 / (1 + distance)``."""

    @extend_schema_serializer(component_name="SimilarCasesFilter")
    class FilterSerializer(serializers.Serializer):
        k = serializers.IntegerField(min_value=1, max_value=100, default=10)
        tumour_type = serializers.ChoiceField(choices=TumourType.choices, required=False)

    @extend_schema_serializer(component_name="SimilarCasesOutput")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="SimilarCasesResult")
        class ResultSerializer(serializers.Serializer):
            case_id = serializers.IntegerField()
            similarity = serializers.FloatField(
                help_text="1 / (1 + Euclidean distance of the combined vectors)"
            )
            score = serializers.FloatField(help_text="the ranking score: type agreement and similarity")
            tumour_type = serializers.CharField(allow_null=True)
            diagnoses = serializers.ListField(child=serializers.CharField())
            thumbnail_url = serializers.CharField()
            why = serializers.ListField(child=serializers.CharField())

        status = serializers.CharField(help_text='"ready", or "pending" while the case is not described yet')
        query_tumour_type = serializers.CharField(allow_null=True)
        results = ResultSerializer(many=True)

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer)
    def get(self, request, case_id: int):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        query = query_for_case(case)
        if query is None:
            return Response({"status": "pending", "query_tumour_type": case.tumour_type, "results": []})
        matches = similar_for_query(
            query, k=filters.validated_data["k"], tumour_type=filters.validated_data.get("tumour_type")
        )
        names: dict[int, list[str]] = {}
        for case_id_, name in (
            CaseDiagnosis.objects.filter(case_id__in=[m.case_id for m in matches])
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
            for m in matches
        ]
        data = {"status": "ready", "query_tumour_type": query.tumour_type, "results": results}
        return Response(self.OutputSerializer(data).data)


class DiagnosisOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    key = serializers.CharField()
    tumour_type = serializers.CharField(allow_null=True)
    added_automatically = serializers.BooleanField()


class CaseDiagnosisCreateApi(APIView):
    """Record a diagnosis on a case. An unseen name joins the catalogue (added automatically); a
    near-duplicate of an entry is linked to that entry, and ``matched_existing`` says which."""

    @extend_schema_serializer(component_name="CaseDiagnosisCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)

    @extend_schema_serializer(component_name="CaseDiagnosisCreateOutput")
    class OutputSerializer(serializers.Serializer):
        diagnosis = DiagnosisOutputSerializer()
        created = serializers.BooleanField(help_text="a new catalogue entry was added")
        matched_existing = DiagnosisOutputSerializer(
            allow_null=True, help_text="the entry a near-duplicate name was linked to"
        )
        message = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 201: OutputSerializer})
    def post(self, request, case_id: int):
        serializer = self.InputSerializer(data=request.data)
        if not serializer.is_valid():
            return Response(
                {"error": "name: a diagnosis name is required", "fields": serializer.errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        try:
            diagnosis, created, matched = diagnosis_record(
                case=case, name=serializer.validated_data["name"], user=request.user
            )
        except ValueError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if created:
            message = f'"{diagnosis.name}" was added to the diagnosis catalogue.'
        elif matched is not None:
            message = f'Recorded as the existing diagnosis "{matched.name}" (a near match of what you typed).'
        else:
            message = f'Recorded as "{diagnosis.name}".'
        data = {"diagnosis": diagnosis, "created": created, "matched_existing": matched, "message": message}
        return Response(
            self.OutputSerializer(data).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class DiagnosisListApi(APIView):
    """Autocomplete over the catalogue: every word typed must appear in the normalised name."""

    @extend_schema_serializer(component_name="DiagnosisListFilter")
    class FilterSerializer(serializers.Serializer):
        q = serializers.CharField(required=False, allow_blank=True, default="")
        limit = serializers.IntegerField(min_value=1, max_value=100, default=20)

    @extend_schema_serializer(component_name="DiagnosisListOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        tumour_type = serializers.CharField(allow_null=True)
        added_automatically = serializers.BooleanField()
        uses = serializers.IntegerField()

    @extend_schema(
        parameters=[FilterSerializer],
        responses=inline_serializer("DiagnosisResults", {"results": OutputSerializer(many=True)}),
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        entries = diagnoses_search(q=filters.validated_data["q"], limit=filters.validated_data["limit"])
        return Response({"results": self.OutputSerializer(entries, many=True).data})

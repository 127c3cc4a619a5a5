"""REST endpoints of the diagnoses: recording one on a case or removing it, catalogue autocomplete."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from cases.selectors import case_get
from clinic.api.revisions import etag_parameters, if_match_revision, with_case_etag
from clinic.api.schema import paged, problem_responses
from recommender.catalogue import diagnosis_merge_note
from recommender.selectors import diagnoses_search
from recommender.services import case_diagnosis_remove, diagnosis_record


class DiagnosisOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    key = serializers.CharField()
    tumour_type = serializers.CharField(allow_null=True)
    added_automatically = serializers.BooleanField()


class CaseDiagnosisCreateApi(APIView):
    """Record a diagnosis on a case. An unseen name joins the catalogue (added automatically); a
    near-duplicate of an entry is linked to that entry, and ``matched_existing`` says which."""

    required_permissions = {"POST": "cases.add_casediagnosis"}

    @extend_schema_serializer(component_name="CaseDiagnosisCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(
            max_length=200, help_text="at least one letter or digit, in any script (else a 400)"
        )

    @extend_schema_serializer(component_name="CaseDiagnosisCreateOutput")
    class OutputSerializer(serializers.Serializer):
        diagnosis = DiagnosisOutputSerializer()
        created = serializers.BooleanField(help_text="a new catalogue entry was added")
        matched_existing = DiagnosisOutputSerializer(
            allow_null=True, help_text="the entry a near-duplicate name was linked to"
        )
        message = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        parameters=etag_parameters(200, 201, 409),
        responses={200: OutputSerializer, 201: OutputSerializer, **problem_responses(400, 404, 409, 415)},
    )
    def post(self, request, case_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        try:
            diagnosis, created, matched = diagnosis_record(
                case=case,
                name=serializer.validated_data["name"],
                user=request.user,
                expected_revision=if_match_revision(request),
            )
        except ValueError as exc:
            raise ValidationError({"name": [str(exc)]}) from exc
        if created:
            message = f'"{diagnosis.name}" was added to the diagnosis catalogue.'
        elif matched is not None:
            message = diagnosis_merge_note(typed=serializer.validated_data["name"], recorded=matched) or (
                f'Recorded as the existing diagnosis "{matched.name}" (a near match of what you typed).'
            )
        else:
            message = f'Recorded as "{diagnosis.name}".'
        data = {"diagnosis": diagnosis, "created": created, "matched_existing": matched, "message": message}
        return with_case_etag(
            Response(
                self.OutputSerializer(data).data,
                status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            ),
            case,
        )


class CaseDiagnosisDeleteApi(APIView):
    """Remove a diagnosis from a case. The catalogue entry stays; 404 when the case does not exist or
    the diagnosis is not recorded on it."""

    required_permissions = {"DELETE": "cases.delete_casediagnosis"}

    @extend_schema(
        request=None,
        parameters=etag_parameters(204, 409),
        responses={204: None, **problem_responses(400, 404, 409)},
    )
    def delete(self, request, case_id: int, diagnosis_id: int):
        case = case_get(case_id=case_id)
        if case is None:
            raise Http404
        removed = case_diagnosis_remove(
            case=case,
            diagnosis_id=diagnosis_id,
            user=request.user,
            expected_revision=if_match_revision(request),
        )
        if removed is None:
            raise NotFound("This diagnosis is not recorded on this case.")
        return with_case_etag(Response(status=status.HTTP_204_NO_CONTENT), case)


class DiagnosisListApi(GenericAPIView):
    """Autocomplete over the catalogue, most used first: every word typed must appear in the normalised
    name."""

    required_permissions = {"GET": "cases.view_diagnosis"}

    @extend_schema_serializer(component_name="DiagnosisListFilter")
    class FilterSerializer(serializers.Serializer):
        q = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema_serializer(component_name="DiagnosisListOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        tumour_type = serializers.CharField(allow_null=True)
        added_automatically = serializers.BooleanField()
        uses = serializers.IntegerField()

    @extend_schema(
        parameters=[FilterSerializer],
        responses={**paged(OutputSerializer(many=True)), **problem_responses(400, 404)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        entries = diagnoses_search(q=filters.validated_data["q"], limit=None)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(self.OutputSerializer(page, many=True).data)

"""Reads for the recommender: the current scaler, similar cases, the type vote, diagnosis autocomplete."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, QuerySet

from cases.models import Case, Diagnosis
from recommender import ranking
from recommender.features import describe_agreement
from recommender.index import Hit, get_index
from recommender.models import AnalysisStatus, CaseAnalysis, CaseFeatures, FeatureScaler
from recommender.names import normalise
from segmentation.models import ReviewStatus

KNN_K = 10
_scaler_cache: dict[tuple, tuple[FeatureScaler, ranking.Scaler]] = {}


def current_scaler() -> tuple[FeatureScaler, ranking.Scaler] | None:
    """The current scaler row and its numpy form (parsed once per process and scaler).

    Keyed by id and fit time: SQLite reuses the id of a row whose transaction was rolled back, so the
    id alone could hand back another fit's scaler."""
    key = FeatureScaler.objects.filter(is_current=True).values_list("pk", "fitted_at").first()
    if key is None:
        return None
    if key not in _scaler_cache:
        row = FeatureScaler.objects.get(pk=key[0])
        _scaler_cache.clear()
        _scaler_cache[key] = (row, ranking.Scaler.from_params(row.params))
    return _scaler_cache[key]


@dataclass
class Query:
    """What a similar-case search needs to know about the case it starts from."""

    combined: np.ndarray
    z: np.ndarray  # standardised hand-made features, for the "why"
    tumour_type: str | None = None
    type_confidence: float = 0.0  # 1 for a clinician's or imported type, the vote's share for a prediction
    exclude_patient_ids: set[int] = field(default_factory=set)
    exclude_case_ids: set[int] = field(default_factory=set)


@dataclass
class Match:
    case_id: int
    distance: float
    similarity: float
    score: float
    tumour_type: str | None
    why: list[str]


def query_for_case(case: Case) -> Query | None:
    """None until the case has features and a scaler exists."""
    feats = CaseFeatures.objects.filter(case=case).first()
    current = current_scaler()
    if feats is None or current is None:
        return None
    _, scaler = current
    combined = scaler.transform(feats.features, feats.embedding)
    if case.has_recorded_type:
        ttype, confidence = case.tumour_type, 1.0
    else:
        ttype, confidence = case.predicted_tumour_type, float(case.predicted_confidence or 0.0)
    return Query(
        combined=combined,
        z=scaler.standardise(feats.features),
        tumour_type=ttype,
        type_confidence=confidence,
        exclude_patient_ids={case.patient_id},
        exclude_case_ids={case.pk},
    )


def type_neighbours(query: Query, *, k: int = KNN_K) -> list[Hit]:
    """The ``k`` nearest base cases of other patients, nearest first: the kNN vote's voters."""
    return get_index().search(
        query.combined,
        k,
        exclude_patient_ids=query.exclude_patient_ids,
        exclude_case_ids=query.exclude_case_ids,
    )


def type_vote(hits: list[Hit], *, k: int = KNN_K) -> dict[str, float]:
    """The kNN vote's shares per type from its voters (``type_neighbours``)."""
    return ranking.knn_distribution([h.distance for h in hits], [h.tumour_type for h in hits], k=k)


def type_distribution(query: Query, *, k: int = KNN_K) -> dict[str, float]:
    """The kNN vote's shares per type over the case base (other patients only)."""
    return type_vote(type_neighbours(query, k=k), k=k)


def similar_for_query(query: Query, *, k: int = 10, tumour_type: str | None = None) -> list[Match]:
    """The top ``k`` base cases by ``ranking.score`` (see recommender.ranking for the formula)."""
    index = get_index()
    pool = max(4 * k, 40)
    kwargs = {"exclude_patient_ids": query.exclude_patient_ids, "exclude_case_ids": query.exclude_case_ids}
    # A filter to a type other than the query's own: its matches may lie far from the query, where an
    # HNSW walk finds them poorly (docs/benchmarks.md, "Search at scale"), so that search is exact.
    exact = bool(tumour_type) and tumour_type != query.tumour_type
    hits = {
        h.case_id: h
        for h in index.search(query.combined, pool, tumour_type=tumour_type, exact=exact, **kwargs)
    }
    if not tumour_type and query.tumour_type:
        # Same-type neighbours may all lie beyond the unfiltered pool: fetch them with the filter too.
        for h in index.search(query.combined, pool, tumour_type=query.tumour_type, **kwargs):
            hits.setdefault(h.case_id, h)
    scored = sorted(
        hits.values(),
        key=lambda h: (
            -ranking.score(h.distance, h.tumour_type, query.tumour_type, query.type_confidence),
            h.distance,
            h.case_id,
        ),
    )[:k]
    return _matches(query, scored)


def _matches(query: Query, scored: list[Hit]) -> list[Match]:
    """The hits as Matches, in their order, each with its score and why."""
    raw = dict(
        CaseFeatures.objects.filter(case_id__in=[h.case_id for h in scored]).values_list(
            "case_id", "features"
        )
    )
    current = current_scaler()
    matches = []
    for h in scored:
        why = []
        if query.tumour_type and h.tumour_type == query.tumour_type:
            why.append(f"same tumour type ({h.tumour_type})")
        if current is not None and h.case_id in raw:
            why += [
                f"similar {label}"
                for label in describe_agreement(query.z, current[1].standardise(raw[h.case_id]))
            ]
        matches.append(
            Match(
                h.case_id,
                h.distance,
                ranking.similarity(h.distance),
                ranking.score(h.distance, h.tumour_type, query.tumour_type, query.type_confidence),
                h.tumour_type,
                why,
            )
        )
    return matches


def similar_cases(*, case: Case, k: int = 10, tumour_type: str | None = None) -> list[Match]:
    query = query_for_case(case)
    if query is None:
        return []
    return similar_for_query(query, k=k, tumour_type=tumour_type)


def suggestion_neighbours(case: Case, query: Query | None = None) -> list[Match] | None:
    """The base cases the case's type suggestion was voted by, nearest first, as stored with the
    suggestion; None when the case's type is recorded (no suggestion to explain) or was never voted.

    The similar-cases panel shows exactly these when the type is a suggestion, so the explanation ("From
    similar cases: ...") describes the cases on the screen: same cases, same order, same count."""
    if case.has_recorded_type or not case.predicted_tumour_type:
        return None
    stored = (case.predicted_type_sources or {}).get("neighbours")
    query = query if query is not None else query_for_case(case)
    if stored is None or query is None:
        return None
    hits = [Hit(n["case"], float(n["distance"]), n["tumour_type"], None) for n in stored]
    return _matches(query, hits)


def case_similar_matches(case: Case, *, k: int) -> tuple[list[Match], str]:
    """What the case page's similar-cases panel and the report show, and why: ("suggestion", the type
    suggestion's voters) when the type is a suggestion, else ("ranked", the top ``k`` by score); ([],
    the analysis status or "pending") when the case gets none."""
    withheld = case_results_withheld(case)
    if withheld:
        return [], withheld
    query = query_for_case(case)
    if query is None:
        return [], "pending"
    voters = suggestion_neighbours(case, query)
    if voters is not None:
        return voters, "suggestion"
    return similar_for_query(query, k=k), "ranked"


def case_results_withheld(case: Case) -> str | None:
    """Why the case gets no type suggestion and no similar cases ("no_tumour", "not_brain_mri"), or None."""
    status = CaseAnalysis.objects.filter(case=case).values_list("status", flat=True).first()
    return None if status in (None, AnalysisStatus.TUMOUR) else status


def case_analysis(case: Case):
    """The case's last analysis (recommender.models.CaseAnalysis) or None."""
    return CaseAnalysis.objects.filter(case=case).first()


def case_base() -> QuerySet[Case]:
    """Cases whose outline is trusted: the record's case base (a ground-truth mask, imported or
    corrected) and the cases with an AI mask a clinician validated."""
    validated = Case.objects.filter(segmentation_runs__review_status=ReviewStatus.VALIDATED)
    return (Case.objects.case_base() | validated).distinct()


def diagnoses_search(*, q: str = "", limit: int = 20) -> QuerySet[Diagnosis]:
    """Autocomplete: catalogue entries in use (not retired, not merged) whose normalised key contains
    every word typed, most used first."""
    qs = Diagnosis.objects.filter(retired_at__isnull=True).annotate(uses=Count("case_diagnoses"))
    for token in normalise(q).split():
        qs = qs.filter(key__contains=token)
    return qs.order_by("-uses", "name")[:limit]

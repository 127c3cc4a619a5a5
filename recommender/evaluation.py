"""Retrieval evaluation: slices of a folder go through the upload pipeline against the case base.

For each query slice (shared layout: cases.csv, images/, masks/):
1. the primary model segments it (as a new upload's primary run would);
2. its features and learned embedding are extracted from that predicted mask;
3. the kNN vote, blended with the type classifier when there is one (``ranking.blend_votes``), suggests
   its type;
4. the similar-case query ranks the base (type agreement + distance, ``recommender.ranking``).
Nothing is stored: the patients of all the query slices (by ``patient_group``: rescans share it)
are taken out of the base and the scaler (standardisation, PCA, discriminants) is refitted without
them, inside a transaction that is rolled back at the end. Every figure is on patients not in the base.

Metrics (Cheng et al. 2016: a result is relevant when its tumour type is the query's):
- ``precision_at_10``: relevant share of the first 10 results;
- ``map``: mean over queries of AP@k = (1/min(k, R)) * sum over relevant ranks i <= k of precision@i,
  R the number of base cases of the query's type (hundreds on the real data, so the divisor is k);
- ``type_accuracy``: the suggested type equals the label;
- ``query_ms_p50``: the type vote + similar-case query; ``pipeline_ms_p50``: segmentation to results.
``classifier_weights`` scores other shares of the classifier in the vote in the same pass (under
``by_classifier_weight``; 0 is the kNN vote alone, 1 the classifier alone): the way the setting
``TUMORSITE_TYPE_CLASSIFIER_WEIGHT`` is chosen, on the validation split.
A query whose predicted mask is empty is described by its faint outline (``outline_from_probability``), as
an upload was until #32: the app now says "No tumour found by the models" and gives such an upload no type
and no similar cases (recommender.analysis); the study keeps the faint outline so that its figures stay
comparable with the earlier ones. A query with no outline at all gets no type and no results: wrong, with
AP 0.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count
from PIL import Image

from cases.models import Patient
from ml.data import read_records
from recommender import features as feature_extractor
from recommender import ranking
from recommender.models import CaseFeatures
from recommender.selectors import Query, current_scaler, similar_for_query, type_distribution
from recommender.services import (
    combine,
    describe_slice,
    embedding_model_version,
    feature_scaler_fit,
    outline_from_probability,
    type_classifier,
    type_classifier_probabilities,
)
from segmentation.services import primary_model_version, segment_image


def _group_of(identifier: str) -> str:
    return re.sub(r"[A-Za-z]$", "", identifier)


def average_precision_at_k(relevant: list[bool], k: int, n_relevant: int | None = None) -> float:
    """AP@k, normalised by min(k, relevant cases in the base) so that a perfect ranking scores 1."""
    hits, total = 0, 0.0
    for i, rel in enumerate(relevant[:k], 1):
        if rel:
            hits += 1
            total += hits / i
    denominator = min(k, n_relevant if n_relevant is not None else k)
    return total / denominator if denominator else 0.0


class _Rollback(Exception):
    pass


def evaluate(
    *,
    data_dir: Path,
    k: int = 10,
    ids: list[str] | None = None,
    limit: int | None = None,
    ground_truth_masks: bool = False,
    classifier_weights: list[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """The metrics above; ``ground_truth_masks`` replaces step 1 by the folder's masks (the retrieval
    alone, as if the segmentation were perfect)."""
    records = read_records(data_dir)
    if ids is not None:
        wanted = set(map(str, ids))
        records = [r for r in records if r.id in wanted]
    if limit:
        records = records[:limit]
    groups = {_group_of(r.patient_group) for r in records}
    held_out = {
        pk
        for pk, identifier in Patient.objects.values_list("pk", "identifier")
        if _group_of(identifier) in groups
    }
    result: dict = {}
    try:
        with transaction.atomic():
            CaseFeatures.objects.filter(patient_id__in=held_out).update(in_base=False)
            if feature_scaler_fit() is None:
                raise RuntimeError(
                    "The case base has no features yet: run `manage.py build_case_base` first."
                )
            result = _evaluate(
                data_dir=data_dir,
                records=records,
                k=k,
                ground_truth_masks=ground_truth_masks,
                classifier_weights=classifier_weights or [],
                progress=progress,
            )
            result["held_out_patients"] = len(held_out)
            raise _Rollback
    except _Rollback:
        pass
    return result


class _Scores:
    """Per-query outcomes under one classifier weight."""

    def __init__(self):
        self.aps, self.p10s, self.correct, self.per_type = [], [], [], {}

    def add(self, truth: str, predicted: str | None, relevant: list[bool], k: int, n_relevant: int) -> None:
        self.aps.append(average_precision_at_k(relevant, k, n_relevant))
        self.p10s.append(float(np.mean(relevant[:10])) if relevant else 0.0)
        self.correct.append(int(predicted == truth))
        self.per_type.setdefault(truth, []).append(int(predicted == truth))

    def fail(self, truth: str) -> None:
        self.add(truth, None, [], 1, 1)

    def summary(self) -> dict:
        mean = lambda xs: round(float(np.mean(xs)), 4) if xs else 0.0  # noqa: E731
        return {
            "map": mean(self.aps),
            "precision_at_10": mean(self.p10s),
            "type_accuracy": mean(self.correct),
            "type_accuracy_by_type": {t: mean(v) for t, v in sorted(self.per_type.items()) if t},
        }


def _evaluate(
    *,
    data_dir: Path,
    records: list,
    k: int,
    ground_truth_masks: bool,
    classifier_weights: list[float],
    progress: Callable[[int, int], None] | None,
) -> dict:
    current = current_scaler()
    if current is None:
        raise RuntimeError("The case base has no features yet: run `manage.py build_case_base` first.")
    primary = primary_model_version()
    if primary is None and not ground_truth_masks:
        raise RuntimeError("No segmentation model is registered: run `manage.py sync_models`.")
    embed_version = embedding_model_version() if current[0].embedding_model else None
    configured = float(settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT)
    classifier = type_classifier()
    if classifier is None and any(w > 0 for w in classifier_weights):
        raise RuntimeError(
            "--classifier-weights needs the type classifier: TUMORSITE_TYPE_CLASSIFIER names no "
            "readable bundle (train one with `manage.py train_type_classifier`)."
        )
    weights = [configured] + [w for w in dict.fromkeys(classifier_weights) if w != configured]
    use_classifier = classifier is not None and any(w > 0 for w in weights)

    type_counts = dict(
        CaseFeatures.objects.filter(in_base=True).values_list("tumour_type").annotate(n=Count("id"))
    )
    patients_by_group: dict[str, set[int]] = {}
    for pk, identifier in Patient.objects.values_list("pk", "identifier"):
        patients_by_group.setdefault(_group_of(identifier), set()).add(pk)

    scores = {w: _Scores() for w in weights}
    query_ms, pipeline_ms, failures = [], [], 0
    for n, record in enumerate(records, 1):
        image = np.asarray(Image.open(Path(data_dir) / "images" / f"{record.id}.png").convert("L"))
        started = time.perf_counter()
        if ground_truth_masks:
            mask = np.asarray(Image.open(Path(data_dir) / "masks" / f"{record.id}.png").convert("L")) > 127
        else:
            prob, mask = segment_image(primary, image)
            mask = outline_from_probability(prob, mask)
        try:
            feats, embedding, embedding_model = describe_slice(image, mask, embed_version=embed_version)
        except feature_extractor.FeatureError:
            failures += 1
            for s in scores.values():
                s.fail(record.tumour_type)
            continue
        probabilities = type_classifier_probabilities(image) if use_classifier else None
        query = Query(
            combined=combine(feats, embedding, embedding_model, *current),
            z=current[1].standardise(feats),
            exclude_patient_ids=patients_by_group.get(_group_of(record.patient_group), set())
            | patients_by_group.get(_group_of(record.pid or record.patient_group), set()),
        )
        q_started = time.perf_counter()
        knn = type_distribution(query)
        for w in weights:  # the configured weight first: it is the one timed
            predicted, confidence = ranking.blend_votes(knn, probabilities, w)
            query.tumour_type, query.type_confidence = predicted, confidence
            matches = similar_for_query(query, k=max(k, 10))
            if w == configured:
                finished = time.perf_counter()
                query_ms.append((finished - q_started) * 1000.0)
                pipeline_ms.append((finished - started) * 1000.0)
            scores[w].add(
                record.tumour_type,
                predicted,
                [m.tumour_type == record.tumour_type for m in matches],
                k,
                type_counts.get(record.tumour_type, 0),
            )
        if progress:
            progress(n, len(records))
    result = {
        **scores[configured].summary(),
        "n_queries": len(records),
        "query_ms_p50": round(float(np.median(query_ms)), 2) if query_ms else 0.0,
        "pipeline_ms_p50": round(float(np.median(pipeline_ms)), 2) if pipeline_ms else 0.0,
        "k": k,
        "empty_masks": failures,
        "masks": "ground truth" if ground_truth_masks else f"predicted by {primary.name}",
        "embedding_model": current[0].embedding_model,
        "weights": current[1].weights,
        "type_classifier": (classifier.name if classifier is not None and configured > 0 else None),
        "classifier_weight": configured if classifier is not None else 0.0,
        "base_cases": current[0].n_cases,
    }
    if len(weights) > 1:
        result["by_classifier_weight"] = {str(w): scores[w].summary() for w in sorted(weights)}
    return result

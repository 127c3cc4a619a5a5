import shutil
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection

from cases.models import Case, TypeSource
from cases.selectors import case_pixels
from ml.inference import file_sha256
from ml.type_classification import load_type_classifier
from recommender import services
from recommender.fields import to_pgvector_literal
from recommender.index import NumpyIndex, PgvectorIndex
from recommender.models import CaseFeatures, FeatureScaler
from recommender.ranking import blend_votes
from recommender.selectors import query_for_case, similar_cases, type_distribution, type_neighbours
from recommender.services import (
    case_analyse,
    case_base_build,
    case_features_compute,
    case_tumour_type_suggest,
    embedding_model_version,
)
from segmentation.services import model_versions_sync
from segmentation.testing import (
    make_case,
    make_case_base,
    needs_postgres,
    retrain_bundle,
    synthetic_case_kwargs,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def base(media_dir, clinician):
    cases = make_case_base(n_per_type=6, user=clinician)
    summary = case_base_build(use_embedding=False)
    assert summary["described"] == 18 and summary["failed"] == 0 and summary["scaler_cases"] == 18
    return cases


def _new_query_case(tumour_type, *, patient="NEW", seed=7, ground_truth=True, clinician_type=None):
    kwargs = synthetic_case_kwargs(tumour_type, 500 + seed)
    case = make_case(patient=patient, ground_truth=ground_truth, tumour_type=clinician_type, **kwargs)
    if clinician_type:
        Case.objects.filter(pk=case.pk).update(tumour_type_source=TypeSource.CLINICIAN)
        case.refresh_from_db()
    case_features_compute(case=case, use_embedding=False)
    return case


def test_the_base_is_described_and_indexed(base):
    rows = CaseFeatures.objects.filter(in_base=True)
    assert rows.count() == 18
    assert all(r.combined is not None and r.tumour_type for r in rows)


def test_the_type_suggestion_is_a_confident_knn_vote(base):
    for tumour_type in ("meningioma", "glioma", "pituitary"):
        case = _new_query_case(tumour_type, patient=f"NEW-{tumour_type}")
        Case.objects.filter(pk=case.pk).update(tumour_type=None, tumour_type_source=None)
        case.refresh_from_db()
        predicted, confidence = case_tumour_type_suggest(case=case)
        case.refresh_from_db()
        assert predicted == tumour_type and confidence > 0.6
        assert case.tumour_type == tumour_type and case.tumour_type_source == TypeSource.PREDICTED
        assert case.predicted_confidence == pytest.approx(confidence, abs=1e-4)
        sources = case.predicted_type_sources  # the tests run without a classifier: the vote alone
        assert sources["classifier"] is None and sources["classifier_weight"] == 0.0
        assert sources["similar_cases"][tumour_type] == pytest.approx(confidence, abs=1e-4)
        assert sum(sources["similar_cases"].values()) == pytest.approx(1.0, abs=1e-3)


def test_the_type_classifier_is_blended_into_the_suggestion(base, tiny_type_classifier, settings):
    case = _new_query_case("glioma", patient="NEW-blend")
    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 0.0
    assert (
        case_tumour_type_suggest(case=case)[0] == "glioma"
    )  # the kNN vote alone, whatever the classifier says

    # The untrained classifier's opinion of this very slice, read back from the record.
    opinion = load_type_classifier(
        tiny_type_classifier, runtime=settings.TUMORSITE_INFERENCE_RUNTIME
    ).predict(case_pixels(case=case))
    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 1.0
    predicted, confidence = case_tumour_type_suggest(case=case)
    assert predicted == max(sorted(opinion), key=opinion.get) and confidence == pytest.approx(
        max(opinion.values())
    )

    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 0.5
    knn = type_distribution(query_for_case(case))
    assert knn["glioma"] > 0.6
    predicted, confidence = case_tumour_type_suggest(case=case)
    expected_type, expected_confidence = blend_votes(knn, opinion, 0.5)
    assert predicted == expected_type and confidence == pytest.approx(expected_confidence, abs=1e-4)
    case.refresh_from_db()
    assert case.predicted_tumour_type == expected_type and case.tumour_type_source == TypeSource.PREDICTED
    voters = case.predicted_type_sources.pop("neighbours")
    assert case.predicted_type_sources == {
        "similar_cases": {t: pytest.approx(v, abs=1e-4) for t, v in knn.items()},
        "classifier": {t: pytest.approx(v, abs=1e-4) for t, v in opinion.items()},
        "classifier_weight": 0.5,
        # the served version's key: the classifier's slot and its weights
        "classifier_version": f"type_classifier@{file_sha256(tiny_type_classifier)[:12]}",
    }
    assert [n["case"] for n in voters] == [h.case_id for h in type_neighbours(query_for_case(case))]


def test_analysing_a_case_reads_its_slice_once(base, tiny_type_classifier, settings, monkeypatch):
    case = _new_query_case("glioma", patient="NEW-reads")
    reads = []
    real = services.case_pixels
    monkeypatch.setattr(services, "case_pixels", lambda *, case: reads.append(case.pk) or real(case=case))
    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 0.5
    assert case_analyse(case=case) is not None
    case.refresh_from_db()
    assert reads == [case.pk] and case.predicted_type_sources["classifier"] is not None

    reads.clear()  # without a classifier weight the suggestion needs no pixels at all
    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 0.0
    assert case_tumour_type_suggest(case=case)[0] is not None and reads == []


def test_a_missing_classifier_leaves_the_knn_vote_with_a_warning(base, settings, tmp_path, caplog):
    settings.TUMORSITE_TYPE_CLASSIFIER = str(tmp_path / "nowhere" / "type_classifier.keras")
    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 1.0
    case = _new_query_case("pituitary", patient="NEW-missing")
    with caplog.at_level("WARNING", logger="recommender.services"):
        predicted, confidence = case_tumour_type_suggest(case=case)
    assert predicted == "pituitary" and confidence > 0.6
    assert "no type classifier" in caplog.text


def test_a_clinicians_type_is_never_overwritten(base):
    case = _new_query_case("pituitary", clinician_type="glioma")
    predicted, _ = case_tumour_type_suggest(case=case)
    case.refresh_from_db()
    assert predicted == "pituitary"
    assert case.tumour_type == "glioma" and case.tumour_type_source == TypeSource.CLINICIAN


def test_similar_cases_rank_the_same_type_first_and_say_why(base):
    case = _new_query_case("meningioma", clinician_type="meningioma")
    results = similar_cases(case=case, k=8)
    assert len(results) == 8
    assert [r.tumour_type for r in results[:6]] == ["meningioma"] * 6
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert results[0].why[0] == "same tumour type (meningioma)" and len(results[0].why) > 1
    assert all(0 < r.similarity <= 1 for r in results)


def test_similar_cases_exclude_the_same_patient_and_filter_by_type(base):
    same_patient = base[0]  # a glioma base case
    case = _new_query_case("glioma", patient=same_patient.patient.identifier, clinician_type="glioma")
    results = similar_cases(case=case, k=20)
    ids = {r.case_id for r in results}
    assert same_patient.pk not in ids and case.pk not in ids and len(ids) == 17
    only = similar_cases(case=case, k=20, tumour_type="pituitary")
    assert {r.tumour_type for r in only} == {"pituitary"} and len(only) == 6


def test_a_case_without_features_has_no_similar_cases_yet(base):
    case = make_case(patient="EMPTY")
    assert query_for_case(case) is None and similar_cases(case=case) == []


@needs_postgres
@pytest.mark.usefixtures("base")
def test_numpy_and_pgvector_agree_on_the_top_k():
    n_queries = 5
    rng = np.random.default_rng(3)
    rows = list(CaseFeatures.objects.filter(in_base=True))
    hnsw = PgvectorIndex()
    hnsw.force_index = True  # 18 rows: without this the planner would scan the table
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT case_id FROM recommender_casefeatures WHERE in_base "
            "ORDER BY combined <-> %s::vector LIMIT 5",
            [to_pgvector_literal(rows[0].combined)],
        )
        assert "combined_hnsw" in " ".join(r[0] for r in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
        # The graph of migration 0004 (docs/benchmarks.md, "Search at scale"), partial over the base cases.
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'recommender_casefeatures_combined_hnsw'"
        )
        indexdef = cursor.fetchone()[0]
        assert "m='32'" in indexdef and "ef_construction='128'" in indexdef and "WHERE in_base" in indexdef
    for i in range(n_queries):
        q = rows[i].combined + rng.normal(0, 0.05, rows[i].combined.shape).astype(np.float32)
        for tumour_type in (None, "glioma"):
            exact = NumpyIndex().search(
                q, 5, tumour_type=tumour_type, exclude_patient_ids={rows[i].patient_id}
            )
            approx = hnsw.search(q, 5, tumour_type=tumour_type, exclude_patient_ids={rows[i].patient_id})
            assert [h.case_id for h in approx] == [h.case_id for h in exact]
            np.testing.assert_allclose([h.distance for h in approx], [h.distance for h in exact], rtol=1e-4)
            scanned = PgvectorIndex().search(
                q, 5, tumour_type=tumour_type, exclude_patient_ids={rows[i].patient_id}, exact=True
            )
            assert [h.case_id for h in scanned] == [h.case_id for h in exact]


def test_new_embedding_weights_are_never_mixed_with_old_embeddings(
    media_dir, clinician, models_dir, tmp_path, settings
):

    for f in models_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    settings.TUMORSITE_MODELS_DIR = tmp_path
    model_versions_sync()
    make_case_base(n_per_type=2, user=clinician)
    assert case_base_build()["described"] == 6
    old_key = FeatureScaler.objects.get(is_current=True).embedding_model
    assert old_key.startswith("tiny_attention_unet@")  # the ensemble's best member by validation Dice

    retrain_bundle(tmp_path, "tiny_attention_unet", seed=7)
    model_versions_sync()
    kwargs = synthetic_case_kwargs("glioma", 503)
    row = case_features_compute(case=make_case(patient="NEW", ground_truth=True, **kwargs))
    assert row.embedding is not None and row.embedding_model.startswith("tiny_attention_unet@")
    assert row.embedding_model != old_key
    # The scaler still belongs to the old weights: the new embedding is left out of the combined vector.
    plain = case_features_compute(
        case=make_case(patient="NEW2", ground_truth=True, **kwargs), use_embedding=False
    )
    np.testing.assert_allclose(row.combined, plain.combined, atol=1e-6)

    rebuilt = case_base_build()
    assert rebuilt["described"] == 8 and rebuilt["unchanged"] == 0  # the 6 + the 2 new (imported) cases
    assert FeatureScaler.objects.get(is_current=True).embedding_model == row.embedding_model


def test_sync_models_warns_only_when_the_embedding_models_weights_change(
    media_dir, clinician, models_dir, tmp_path, settings
):

    for f in models_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    settings.TUMORSITE_MODELS_DIR = tmp_path

    def sync_output() -> str:
        out = StringIO()
        call_command("sync_models", stdout=out)
        return out.getvalue()

    assert "build_case_base" not in sync_output()  # no case base yet: nothing to be stale
    make_case_base(n_per_type=2, user=clinician)
    case_base_build()
    assert "build_case_base" not in sync_output()

    retrain_bundle(tmp_path, "tiny_unet", seed=11)  # not the embedding model: base features stay valid
    assert "build_case_base" not in sync_output()

    retrain_bundle(tmp_path, "tiny_attention_unet", seed=12)  # the embedding model (best member)
    out = sync_output()
    assert "embeddings come from tiny_attention_unet@" in out and "run build_case_base" in out

    case_base_build()
    assert "build_case_base" not in sync_output()


def test_the_embedding_model_is_the_configured_one_else_the_ensembles_best_member(
    models_dir, settings, caplog, monkeypatch
):

    monkeypatch.setattr(services, "_warned_embedding_models", set())

    model_versions_sync()
    settings.TUMORSITE_EMBEDDING_MODEL = ""
    assert embedding_model_version().name == "tiny_attention_unet"  # best validation Dice of the members
    settings.TUMORSITE_EMBEDDING_MODEL = "tiny_unet"
    assert embedding_model_version().name == "tiny_unet"
    # An unknown name, or the ensemble (which has no bottleneck), falls back to the default with a warning,
    # given once per process rather than on every upload.
    for wrong in ("no_such_model", "ensemble"):
        settings.TUMORSITE_EMBEDDING_MODEL = wrong
        with caplog.at_level("WARNING", logger="recommender.services"):
            assert embedding_model_version().name == "tiny_attention_unet"
            assert embedding_model_version().name == "tiny_attention_unet"
        assert caplog.text.count(f"TUMORSITE_EMBEDDING_MODEL={wrong!r}") == 1

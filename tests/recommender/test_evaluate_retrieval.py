import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from ml.data import read_records
from ml.type_classification import load_type_classifier
from recommender.models import CaseFeatures, FeatureScaler
from recommender.ranking import DEFAULT_WEIGHTS
from recommender.services import case_base_build
from segmentation.services import model_versions_sync
from segmentation.testing import make_case_base, write_shared_layout

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def query_dir(tmp_path):
    """Six new patients' slices in the shared layout (cases.csv, images/, masks/)."""
    write_shared_layout(tmp_path, n_per_type=2)
    return tmp_path


def test_evaluate_retrieval_runs_the_pipeline_and_stores_nothing(models_dir, media_dir, query_dir, tmp_path):
    model_versions_sync()
    make_case_base(n_per_type=5)
    case_base_build()
    before = (
        CaseFeatures.objects.count(),
        FeatureScaler.objects.count(),
        list(CaseFeatures.objects.filter(in_base=True).values_list("case_id", flat=True)),
    )
    out = tmp_path / "retrieval.json"
    call_command("evaluate_retrieval", "--data", str(query_dir), "--json", str(out), "--k", "5", verbosity=0)
    result = json.loads(out.read_text())
    assert {"map", "precision_at_10", "type_accuracy", "n_queries", "query_ms_p50", "pipeline_ms_p50"} <= set(
        result
    )
    assert result["n_queries"] == 6 and result["pipeline_ms_p50"] >= result["query_ms_p50"] > 0

    assert result["weights"] == DEFAULT_WEIGHTS  # the combined vector's weights are part of the figure
    after = (
        CaseFeatures.objects.count(),
        FeatureScaler.objects.count(),
        list(CaseFeatures.objects.filter(in_base=True).values_list("case_id", flat=True)),
    )
    assert after == before

    call_command(
        "evaluate_retrieval",
        "--data",
        str(query_dir),
        "--json",
        str(out),
        "--ground-truth-masks",
        verbosity=0,
    )
    result = json.loads(out.read_text())
    assert result["type_accuracy"] == 1.0 and result["map"] > 0.6


def test_evaluate_retrieval_scores_several_classifier_weights_in_one_pass(
    models_dir, media_dir, query_dir, tmp_path, tiny_type_classifier, settings
):

    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 0.0
    model_versions_sync()
    make_case_base(n_per_type=5)
    case_base_build()
    out = tmp_path / "retrieval.json"
    call_command(
        "evaluate_retrieval",
        "--data",
        str(query_dir),
        "--json",
        str(out),
        "--k",
        "5",
        "--classifier-weights",
        "0",
        "1",
        verbosity=0,
    )
    result = json.loads(out.read_text())
    assert result["empty_masks"] == 0 and result["classifier_weight"] == 0.0
    by_weight = result["by_classifier_weight"]
    assert set(by_weight) == {"0.0", "1.0"}
    assert (
        by_weight["0.0"]["type_accuracy"] == result["type_accuracy"]
    )  # the configured weight is the headline

    # Weight 0 is the kNN vote alone: the same figures as a run with no classifier at all.
    settings.TUMORSITE_TYPE_CLASSIFIER = ""
    plain_out = tmp_path / "plain.json"
    call_command(
        "evaluate_retrieval", "--data", str(query_dir), "--json", str(plain_out), "--k", "5", verbosity=0
    )
    plain = json.loads(plain_out.read_text())
    assert plain["type_classifier"] is None and "by_classifier_weight" not in plain
    assert {key: plain[key] for key in ("map", "type_accuracy", "type_accuracy_by_type")} == {
        key: by_weight["0.0"][key] for key in ("map", "type_accuracy", "type_accuracy_by_type")
    }

    # Weight 1 is the classifier alone: its accuracy on the query slices, computed here directly.
    classifier = load_type_classifier(tiny_type_classifier, runtime=settings.TUMORSITE_INFERENCE_RUNTIME)
    hits = []
    for record in read_records(query_dir):
        opinion = classifier.predict(
            np.asarray(Image.open(query_dir / "images" / f"{record.id}.png").convert("L"))
        )
        hits.append(max(sorted(opinion), key=opinion.get) == record.tumour_type)
    assert by_weight["1.0"]["type_accuracy"] == pytest.approx(np.mean(hits), abs=1e-4)


def test_classifier_weights_need_a_classifier_and_must_lie_in_0_to_1(
    models_dir, media_dir, query_dir, tmp_path
):

    model_versions_sync()
    make_case_base(n_per_type=3)
    case_base_build()
    out = tmp_path / "retrieval.json"
    with pytest.raises(CommandError, match=r"\[0, 1\]"):
        call_command(
            "evaluate_retrieval", "--data", str(query_dir), "--json", str(out), "--classifier-weights", "2"
        )
    with pytest.raises(CommandError, match="needs the type classifier"):
        call_command(
            "evaluate_retrieval",
            "--data",
            str(query_dir),
            "--json",
            str(out),
            "--classifier-weights",
            "0.5",
            verbosity=0,
        )
    assert not out.exists()

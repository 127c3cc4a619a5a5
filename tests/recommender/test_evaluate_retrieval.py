import json

import pytest
from django.core.management import call_command

from recommender.models import CaseFeatures, FeatureScaler
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
    before = (CaseFeatures.objects.count(), FeatureScaler.objects.count(),
              list(CaseFeatures.objects.filter(in_base=True).values_list("case_id", flat=True)))
    out = tmp_path / "retrieval.json"
    call_command("evaluate_retrieval", "--data", str(query_dir), "--json", str(out), "--k", "5", verbosity=0)
    result = json.loads(out.read_text())
    assert {"map", "precision_at_10", "type_accuracy", "n_queries", "query_ms_p50", "pipeline_ms_p50"} <= set(result)
    assert result["n_queries"] == 6 and result["pipeline_ms_p50"] >= result["query_ms_p50"] > 0
    from recommender.ranking import DEFAULT_WEIGHTS

    assert result["weights"] == DEFAULT_WEIGHTS  # the combined vector's weights are part of the figure
    after = (CaseFeatures.objects.count(), FeatureScaler.objects.count(),
             list(CaseFeatures.objects.filter(in_base=True).values_list("case_id", flat=True)))
    assert after == before

    call_command("evaluate_retrieval", "--data", str(query_dir), "--json", str(out), "--ground-truth-masks",
                 verbosity=0)
    result = json.loads(out.read_text())
    assert result["type_accuracy"] == 1.0 and result["map"] > 0.6

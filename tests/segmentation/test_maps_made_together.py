"""A case's runs share one graph call: the first run makes every active model's map, the others store it."""

import numpy as np
import pytest

from cases.selectors import case_pixels
from segmentation import services
from segmentation.models import SegmentationRun
from segmentation.services import inference as inference_services
from segmentation.tasks import run_segmentation_task
from segmentation.testing import make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(models_dir, media_dir, clinician):
    services.model_versions_sync()
    return make_case(user=clinician, size=80)


@pytest.fixture(autouse=True)
def no_maps_from_other_tests():
    inference_services._RECENT.clear()
    yield
    inference_services._RECENT.clear()


@pytest.fixture
def graph_calls(monkeypatch):
    """The segmenters of each ``predict_proba_together`` call, by name."""
    calls = []
    real = inference_services.predict_proba_together

    def counting(segmenters, images, **kwargs):
        calls.append(sorted(s.name for s in segmenters))
        return real(segmenters, images, **kwargs)

    monkeypatch.setattr(inference_services, "predict_proba_together", counting)
    return calls


def _runs(case):
    return {
        r.model_version.name: r
        for r in SegmentationRun.objects.filter(case=case).select_related("model_version")
    }


def test_the_first_run_makes_every_models_map_in_one_call_and_the_next_reuses_it(case, graph_calls):
    services.segmentation_runs_create_for_case(case=case)
    for name in ("tiny_unet", "tiny_attention_unet", "ensemble"):
        assert run_segmentation_task.apply(args=[_runs(case)[name].pk]).get() == "done"
    assert graph_calls == [["tiny_attention_unet", "tiny_unet"]]


def test_a_map_made_together_is_the_one_the_model_makes_alone(case):
    services.segmentation_runs_create_for_case(case=case)
    for name in ("tiny_unet", "tiny_attention_unet"):
        run_segmentation_task.apply(args=[_runs(case)[name].pk])
    image = case_pixels(case=case)
    for name, run in _runs(case).items():
        if name == "ensemble":
            continue
        alone = services.segmenter(run.model_version).predict_proba([image])[0]
        stored = services.load_probability(run)  # 8-bit PNG: within one grey level
        np.testing.assert_allclose(stored, alone, atol=1 / 255 + 1e-6)


def test_an_ensemble_that_runs_first_makes_its_members_maps_for_their_runs(case, graph_calls):
    services.segmentation_runs_create_for_case(case=case)
    for name in ("ensemble", "tiny_unet", "tiny_attention_unet"):
        assert run_segmentation_task.apply(args=[_runs(case)[name].pk]).get() == "done"
    assert graph_calls == [["tiny_attention_unet", "tiny_unet"]]


def test_a_new_slice_is_not_answered_from_an_earlier_ones_maps(models_dir, media_dir, clinician, graph_calls):
    services.model_versions_sync()
    first, second = (
        make_case(user=clinician, size=80),
        make_case(user=clinician, size=80, seed=1, patient="P2"),
    )
    for case in (first, second):
        services.segmentation_runs_create_for_case(case=case)
        run_segmentation_task.apply(args=[_runs(case)["tiny_unet"].pk])
    assert len(graph_calls) == 2

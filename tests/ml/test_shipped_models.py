"""The committed bundles load from a clean checkout and reproduce the README's test-split table."""

import json

import numpy as np
import pytest
from django.core.management import call_command

from ml.calibrate import validation_slices
from ml.type_classification import accuracy_by_type, labels_of, load_type_classifier
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


# OpenVINO is what the CPU workers serve with (TUMORSITE_INFERENCE_RUNTIME=auto): the published figures must
# hold for it as they do for TensorFlow, which made them.
@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_the_shipped_bundles_reproduce_the_published_test_scores(figshare_dir, tmp_path, runtime):
    out = tmp_path / "test.json"
    call_command(
        "evaluate_segmentation",
        "--data",
        str(figshare_dir),
        "--split",
        "test",
        "--models-dir",
        str(REPO_ROOT / "models"),
        "--runtime",
        runtime,
        "--json",
        str(out),
    )
    assert json.loads(out.read_text())["runtime"] == runtime
    measured = json.loads(out.read_text())["models"]
    published = json.loads((REPO_ROOT / "docs" / "results" / "segmentation_test.json").read_text())["models"]
    assert set(measured) == set(published) == {"unet", "attention_unet", "unet_plus_plus", "ensemble"}
    for name, expected in published.items():
        got = measured[name]
        assert got["n"] == expected["n"] == 406
        # Float32 on CPU: thread counts reorder sums, so allow rounding noise, not a different model.
        assert got["dice_mean"] == pytest.approx(expected["dice_mean"], abs=1e-3), name
        assert got["iou_mean"] == pytest.approx(expected["iou_mean"], abs=1e-3), name
        for tumour_type, dice in expected["dice_by_type"].items():
            assert got["dice_by_type"][tumour_type] == pytest.approx(dice, abs=2e-3), (name, tumour_type)


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_the_shipped_type_classifier_reproduces_its_validation_accuracy(figshare_dir, runtime):
    """Its JSON's validation figures are re-measured from the bundle on the same patient-group split, by
    both runtimes (TensorFlow made them; the CPU workers classify with OpenVINO)."""

    path = REPO_ROOT / "models" / "type_classifier" / "type_classifier.keras"
    classifier = load_type_classifier(path, runtime=runtime)
    assert classifier.runtime == runtime
    published = classifier.metadata["metrics"]["val"]
    val = validation_slices(figshare_dir, classifier.metadata["training"]["split"])
    measured = accuracy_by_type(classifier.probabilities(val.images), labels_of(val.records))
    assert measured["n"] == published["n"] == 385
    assert measured["accuracy"] == pytest.approx(published["accuracy"], abs=1e-3)
    assert np.abs(np.array(measured["confusion"]) - np.array(published["confusion"])).sum() <= 1
    assert classifier.metadata["encoder_weights"] == "none"  # trained here, without ImageNet weights

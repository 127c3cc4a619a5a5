"""`python -m ml.calibrate --compare`: a candidate bundle against the shipped bundle of its architecture."""

import hashlib
import json

import keras
import numpy as np
import pytest

from ml.calibrate import calibrate, compare_bundles, main
from ml.data import Record, Slices
from ml.inference import load_segmenter, save_bundle, shipped_bundles
from ml.models import ModelSpec

SPLIT = {
    "by": "patient_group",
    "stratified_by": "tumour_type",
    "seed": 42,
    "val_fraction": 0.15,
    "test_fraction": 0.15,
}


def _bundle(directory, name, arch, *, blind=False):

    keras.utils.set_random_seed(0)
    spec = ModelSpec(architecture=arch, input_size=32, base_filters=4, depth=3)
    model = spec.build()
    if blind:  # a final bias so negative that no pixel ever reaches a threshold: Dice 0 on every tumour
        last = [layer for layer in model.layers if layer.weights][-1]
        kernel, bias = last.get_weights()
        last.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])
    return save_bundle(
        model, directory, name, {"spec": spec.get_config(), "threshold": 0.5, "training": {"split": SPLIT}}
    )


def _slices(n=12):
    rng = np.random.default_rng(0)
    records, images, masks = [], [], []
    for i in range(n):
        mask = np.zeros((40, 40), bool)
        mask[8 + i : 20 + i, 10:24] = True
        image = (rng.random((40, 40)) * 60 + mask * 150).astype(np.uint8)
        records.append(Record(str(i), ("glioma", "meningioma", "pituitary")[i % 3], f"g{i // 2}"))
        images.append(image)
        masks.append(mask)
    return Slices(records, images, masks)


@pytest.fixture
def shipped(tmp_path):
    models = tmp_path / "models"
    for arch in ("unet", "attention_unet"):
        _bundle(models, f"tiny_{arch}", arch)
    return models


def test_a_copy_of_the_shipped_bundle_compares_equal_and_matches_calibrate(shipped, tmp_path):
    copy = _bundle(tmp_path / "runs", "copy_of_unet", "unet")
    val = _slices()
    report = compare_bundles(copy, shipped_bundles(shipped), val, folds=3, repeats=2)
    assert report["shipped"].endswith("tiny_unet.keras")
    # The weights are named by content too, since a shipped path is overwritten when a candidate ships.
    assert report["sha256"] == {
        "candidate": hashlib.sha256(copy.read_bytes()).hexdigest(),
        "shipped": hashlib.sha256((shipped / "tiny_unet.keras").read_bytes()).hexdigest(),
    }
    for kind in ("single", "ensemble"):
        assert report[kind]["candidate"] == report[kind]["shipped"]
        for key in ("difference_in_sample", "difference_held_out"):
            assert report[kind][key]["mean"] == 0.0 and report[kind][key]["ci95"] == [0.0, 0.0]
    # The in-sample figure is calibrate's own choice and score.
    expected = calibrate(load_segmenter(shipped / "tiny_unet.keras"), val)["val_metrics"]["dice_mean"]
    assert report["single"]["shipped"]["in_sample"] == pytest.approx(expected)
    # Held-out settings are chosen on the other folds, so the held-out figure is usually, not always, lower:
    # only its range and its per-type breakdown are checked here.
    shipped_single = report["single"]["shipped"]
    assert 0.0 <= shipped_single["held_out"] <= 1.0
    assert set(shipped_single["held_out_by_type"]) == {"glioma", "meningioma", "pituitary"}


def test_a_candidate_that_finds_nothing_scores_below_the_shipped_bundle(shipped, tmp_path):
    blind = _bundle(tmp_path / "runs", "blind_attention_unet", "attention_unet", blind=True)
    report = compare_bundles(blind, shipped_bundles(shipped), _slices(), folds=3, repeats=1)
    assert report["shipped"].endswith("tiny_attention_unet.keras")
    single = report["single"]
    assert (
        single["candidate"]["in_sample"] == pytest.approx(0.0, abs=1e-6)
        and single["shipped"]["in_sample"] > 0.0
    )
    assert single["difference_in_sample"]["mean"] == pytest.approx(-single["shipped"]["in_sample"], abs=1e-6)
    assert single["difference_held_out"]["ci95"][1] < 0.0
    # The swap reaches the ensemble: with the blind member it averages the other member's maps with zeros.
    assert report["ensemble"]["candidate"] != report["ensemble"]["shipped"]


def test_compare_needs_one_shipped_bundle_of_the_candidates_architecture(shipped, tmp_path):
    other = _bundle(tmp_path / "runs", "tiny_unet_plus_plus", "unet_plus_plus")
    with pytest.raises(SystemExit, match="unet_plus_plus; the models folder holds 0 bundles"):
        compare_bundles(other, shipped_bundles(shipped), _slices(), folds=3)


def test_compare_refuses_a_bundle_trained_on_another_split(shipped, tmp_path):
    path = _bundle(tmp_path / "runs", "reseeded_unet", "unet")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["training"]["split"]["seed"] = 7
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="another split"):
        compare_bundles(path, shipped_bundles(shipped), _slices(), folds=3)


def test_the_command_line_reports_a_missing_candidate(shipped, tmp_path, figshare_dir):
    with pytest.raises(SystemExit, match="no such bundle"):
        main(
            [
                "--data",
                str(figshare_dir),
                "--models-dir",
                str(shipped),
                "--compare",
                str(tmp_path / "nope.keras"),
            ]
        )

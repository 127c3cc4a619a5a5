"""A segmenter that learns the tumour type beside the mask (``--type-head``): one encoder, two heads; the
bundle keeps the segmenter alone, so serving it is unchanged."""

import csv
import json

import keras
import numpy as np
import pytest

from ml.data import Augmentation, make_dataset
from ml.inference import load_segmenter
from ml.models import ModelSpec, segmentation_only, with_type_head
from ml.runs import summarise
from ml.training.config import TrainConfig
from ml.training.loop import train
from ml.type_classification import load_type_classifier
from tests.ml.builders import tiny_segmenter


def test_the_joint_model_has_both_heads_and_strips_to_the_segmenter():
    segmenter = ModelSpec(architecture="unet", input_size=32, base_filters=4, depth=2).build()
    joint = with_type_head(segmenter)
    out = joint(np.zeros((2, 32, 32, 1), np.float32))
    assert out["mask"].shape == (2, 32, 32, 1) and out["tumour_type"].shape == (2, 3)
    np.testing.assert_allclose(np.asarray(out["tumour_type"]).sum(axis=1), 1.0, rtol=1e-5)
    alone = segmentation_only(joint)
    assert len(alone.outputs) == 1 and alone.count_params() == segmenter.count_params()
    assert segmentation_only(segmenter) is segmenter


@pytest.mark.parametrize(
    "changes",
    [
        {"encoder": "vgg16", "image_size": 64},
        {"architecture": "unet_plus_plus", "deep_supervision": True},
        {"type_head": -0.1},
    ],
)
def test_train_config_refuses_what_a_type_head_cannot_do(changes):
    kwargs = {"architecture": "unet", "data_dir": "unused", "type_head": 0.3, **changes}
    with pytest.raises(ValueError, match=r"type head|type_head"):
        TrainConfig(**kwargs)


def test_each_slice_keeps_its_type_through_weighted_draws_and_augmentation():
    n = 6
    images = np.stack([np.full((16, 16, 1), i / 10, np.float32) for i in range(n)])
    masks = np.zeros((n, 16, 16, 1), np.float32)
    types = np.eye(3, dtype=np.float32)[[i % 3 for i in range(n)]]
    drawn = make_dataset(images, masks, batch_size=n, types=types, draw_weights=[1, 1, 1, 1, 1, 5])
    for x, y in drawn.take(3):
        assert set(y) == {"mask", "tumour_type"}
        index = np.rint(np.asarray(x)[:, 0, 0, 0] * 10).astype(int)
        np.testing.assert_array_equal(np.asarray(y["tumour_type"]), types[index])
    flip = Augmentation(flip=True, max_rotation_deg=0.0, max_scale=0.0)
    (x, y), *_ = make_dataset(images, masks, batch_size=n, types=types, augmentation=flip, shuffle=True)
    assert np.asarray(x).shape == (n, 16, 16, 1) and np.asarray(y["tumour_type"]).shape == (n, 3)
    with pytest.raises(ValueError, match="one row per image"):
        make_dataset(images, masks, types=types[:2])


@pytest.mark.slow
def test_a_run_with_a_type_head_writes_the_segmenter_it_trained(tmp_path):
    cfg = tiny_segmenter(tmp_path, "joint", type_head=0.5)
    meta = train(cfg, log=lambda *_: None, verbose=0)
    assert meta["training"]["type_head"] == 0.5
    log = list(csv.DictReader((tmp_path / "runs" / "joint" / "log.csv").open()))
    assert {"val_mask_dice", "val_tumour_type_accuracy"} <= set(log[0])
    state = json.loads((tmp_path / "runs" / "joint" / "state.json").read_text())
    assert state["best_val_dice"] == pytest.approx(float(log[0]["val_mask_dice"]))  # the monitor found it

    bundle = load_segmenter(tmp_path / "out" / "joint.keras")
    joint = keras.models.load_model(
        tmp_path / "runs" / "joint" / "last.keras", compile=False
    )  # one epoch: best = last
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    assert len(bundle.model.outputs) == 1 and bundle.model.count_params() == meta["parameters"]
    np.testing.assert_allclose(bundle.model(x), joint(x)["mask"], rtol=1e-5, atol=1e-6)
    summary = summarise(tmp_path / "out" / "joint.json", tmp_path / "runs")  # python -m ml.runs reads it
    assert summary["in_training_val_dice_by_epoch"] == [round(float(log[0]["val_mask_dice"]), 4)]

    # The type branch, written as a classifier bundle with the same weights, scored on the same patients.
    head_path = tmp_path / "out" / "type_classifier" / "joint_type_head.keras"
    classifier = load_type_classifier(head_path)
    np.testing.assert_allclose(classifier.model(x), joint(x)["tumour_type"], rtol=1e-5, atol=1e-6)
    head = json.loads(head_path.with_suffix(".json").read_text())
    assert head["training"]["joint_segmenter"] == {"name": "joint", "type_head": 0.5}
    assert head["training"]["split"] == meta["training"]["split"] and head["tta"] is True
    assert head["metrics"]["val"]["n"] == meta["training"]["split"]["n_val"]

"""The tumour-type classifier: shapes, warm start from a segmenter, bundle round trip, metrics, training."""

import argparse
import json

import numpy as np
import pytest
import tensorflow as tf

from ml.data import AUGMENTATIONS, TUMOUR_TYPES, Record, read_records, split_ids_as_trained
from ml.encoders import ENCODERS
from ml.inference import save_bundle
from ml.models import build_model
from ml.models.type_classifier import build_type_classifier
from ml.train import transfer_weights
from ml.type_classification import (
    TypeClassifier,
    _tumour_weights_tf,
    accuracy_by_type,
    add_arguments,
    add_tumour_region_argument,
    config_from_args,
    labels_of,
    load_type_classifier,
    make_classification_dataset,
    prepare,
    prepare_masks,
    train_type_classifier,
    tumour_weights,
)
from segmentation.testing import write_shared_layout
from tests.ml.builders import tiny_classifier


@pytest.mark.slow
@pytest.mark.parametrize("input_size, base_filters, depth", [(32, 4, 2), (64, 4, 4)])
def test_it_gives_three_probabilities_per_slice(input_size, base_filters, depth):
    model = build_type_classifier(input_size=input_size, base_filters=base_filters, depth=depth, hidden=8)
    out = np.asarray(model(np.random.default_rng(0).random((2, input_size, input_size, 1), np.float32)))
    assert out.shape == (2, len(TUMOUR_TYPES)) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_size": 50}, "multiple of 16"),
        ({"dropout": 1.0}, "dropout"),
        ({"hidden": 0}, "hidden"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_type_classifier(**kwargs)


@pytest.mark.slow
def test_a_trained_unet_seeds_the_whole_encoder_and_nothing_else():
    unet = build_model("unet", input_size=32, base_filters=4, depth=3)
    classifier = build_type_classifier(input_size=32, base_filters=4, depth=3, hidden=8)
    copied = transfer_weights(unet, classifier)
    # 3 encoder stages and the bottleneck, each 2 convolutions + 2 batch norms.
    assert len(copied) == 4 * 4 and all(n.startswith(("encoder_stage", "bottleneck")) for n in copied)
    np.testing.assert_array_equal(
        classifier.get_layer("bottleneck_conv2").get_weights()[0],
        unet.get_layer("bottleneck_conv2").get_weights()[0],
    )


@pytest.mark.slow
def test_a_bundle_round_trips_and_a_segmenter_is_not_taken_for_one(tmp_path):
    spec = {"input_size": 32, "base_filters": 4, "depth": 2, "hidden": 8, "dropout": 0.0}
    model = build_type_classifier(**spec)
    path = save_bundle(
        model,
        tmp_path,
        "tc",
        {"task": "tumour_type_classification", "classes": list(TUMOUR_TYPES), "spec": spec, "tta": False},
        rebuild=lambda: build_type_classifier(**spec),
    )
    loaded = load_type_classifier(path)
    assert load_type_classifier(path) is loaded  # cached per process
    image = (np.random.default_rng(1).random((100, 80)) * 255).astype(np.uint8)
    expected = np.asarray(model(prepare([image], 32)))[0]  # the bundle says no TTA
    got = loaded.predict(image)
    assert list(got) == list(TUMOUR_TYPES)
    np.testing.assert_allclose([got[t] for t in TUMOUR_TYPES], expected, atol=1e-5)

    save_bundle(
        build_model("unet", input_size=32, base_filters=4, depth=2),
        tmp_path,
        "seg",
        {"spec": {"architecture": "unet", "input_size": 32, "base_filters": 4, "depth": 2}},
    )
    with pytest.raises(ValueError, match="not a tumour-type classifier"):
        load_type_classifier(tmp_path / "seg.keras")
    with pytest.raises(FileNotFoundError):
        load_type_classifier(tmp_path / "missing.keras")


def test_flip_tta_averages_the_slice_and_its_mirror():
    class Asymmetric:
        """A stand-in model: the probability of the first class is the left half's mean intensity."""

        name = "asym"
        input_shape = (None, 8, 8, 1)

        def __call__(self, x, training=False):
            left = tf.reduce_mean(x[:, :, :4, 0], axis=[1, 2])
            return tf.stack([left, 1.0 - left, tf.zeros_like(left)], axis=1)

    image = np.zeros((8, 8), np.uint8)
    image[:, :4] = 255  # left half bright: the left mean is 1, the mirrored left mean 0
    plain = TypeClassifier(Asymmetric(), {"tta": False}).predict(image)
    tta = TypeClassifier(Asymmetric(), {"tta": True}).predict(image)
    assert plain["meningioma"] == pytest.approx(1.0) and tta["meningioma"] == pytest.approx(0.5)


def test_accuracy_and_the_confusion_matrix_are_counted_per_true_type():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])  # the third is a glioma called meningioma
    result = accuracy_by_type(probs, labels)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["accuracy_by_type"] == {"meningioma": 1.0, "glioma": 0.5, "pituitary": 1.0}
    assert result["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]] and result["n"] == 4


def test_a_slice_without_a_type_cannot_be_trained_on():
    records = [Record("1", "glioma", "g1"), Record("2", None, "g2")]
    with pytest.raises(ValueError, match="no tumour type"):
        labels_of(records)
    assert labels_of(records[:1]).tolist() == [TUMOUR_TYPES.index("glioma")]


@pytest.mark.slow
@pytest.mark.realdata
def test_two_training_steps_on_real_slices_write_a_classifier_bundle(figshare_dir, tmp_path):
    seg = build_model("unet", input_size=32, base_filters=4, depth=2)
    seg.save(tmp_path / "seg.keras")
    cfg = tiny_classifier(figshare_dir, tmp_path, "tc_smoke", limit=8, init_from=str(tmp_path / "seg.keras"))
    messages = []
    result = train_type_classifier(cfg, log=messages.append, verbose=0)
    assert any("initialised 12 layers" in m for m in messages)  # 2 stages + bottleneck, 4 layers each
    assert len((tmp_path / "tc_smoke" / "log.csv").read_text().splitlines()) == 2  # header + 1 epoch
    meta = json.loads((tmp_path / "bundles" / "tc_smoke.json").read_text())
    assert meta["task"] == "tumour_type_classification" and meta["classes"] == list(TUMOUR_TYPES)
    assert meta["training"]["split"]["by"] == "patient_group" and meta["training"]["split"]["n_val"] == 8
    assert meta["metrics"]["val"]["n"] == 8 and 0.0 <= meta["metrics"]["val"]["accuracy"] <= 1.0
    assert meta["initialised_from"]["layers_copied"] == 12
    assert (
        "random initialisation" in meta["encoder_weights_note"]
        and "seg.keras" in meta["encoder_weights_note"]
    )
    probs = load_type_classifier(result["path"]).probabilities([np.zeros((256, 256), np.uint8)])
    assert probs.shape == (1, 3) and probs.sum() == pytest.approx(1.0, abs=1e-5)


def _classifier_options(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, ENCODERS, AUGMENTATIONS)
    parser.add_argument("--data", default="data")
    parser.add_argument("--output-dir", default="out")
    return config_from_args(vars(parser.parse_args(list(argv))))


def test_a_classifier_can_train_on_one_fold_with_type_weights():
    cfg = _classifier_options("--fold", "2", "--type-weight", "meningioma=2")
    assert (cfg.fold, cfg.folds, cfg.type_weights) == (2, 5, {"meningioma": 2.0})
    assert _classifier_options().fold is None and _classifier_options().type_weights == {}
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.4"):
        _classifier_options("--fold", "5")
    with pytest.raises(SystemExit):
        _classifier_options("--type-weight", "meningioma")


@pytest.mark.slow
@pytest.mark.realdata
def test_a_fold_classifier_trains_on_its_fold_and_records_it(figshare_dir, tmp_path):
    cfg = tiny_classifier(
        figshare_dir, tmp_path, "tc_fold", limit=8, fold=1, type_weights={"meningioma": 2.0}
    )
    messages = []
    train_type_classifier(cfg, log=messages.append, verbose=0)
    assert any(m.startswith("fold 1 of 5 over the development patients") for m in messages)
    meta = json.loads((tmp_path / "bundles" / "tc_fold.json").read_text())
    split = meta["training"]["split"]
    assert (split["fold"], split["folds"]) == (1, 5) and meta["training"]["type_weights"] == {
        "meningioma": 2.0
    }
    records = read_records(figshare_dir)
    fold_val = split_ids_as_trained(records, split, "val")
    ordinary_val = split_ids_as_trained(records, {**split, "fold": None}, "val")
    assert fold_val != ordinary_val and len(fold_val) > 300  # the fold's patients, not the usual split's


def test_the_init_seed_option_reaches_the_config_and_defaults_to_the_split_seed():
    assert _classifier_options("--init-seed", "7").init_seed == 7
    assert _classifier_options().init_seed is None


@pytest.mark.slow
def test_another_init_seed_trains_other_weights_on_the_same_patients(tmp_path):
    data = tmp_path / "data"
    write_shared_layout(data, n_per_type=8)
    metas, weights = [], []
    for name, overrides in (("tc_a", {}), ("tc_b", {"init_seed": 7})):
        result = train_type_classifier(
            tiny_classifier(data, tmp_path, name, fold=1, folds=3, **overrides), log=lambda _: None, verbose=0
        )
        metas.append(json.loads((tmp_path / "bundles" / f"{name}.json").read_text()))
        weights.append(load_type_classifier(result["path"]).model.get_weights())
    assert [m["training"]["init_seed"] for m in metas] == [42, 7]
    assert metas[0]["training"]["split"] == metas[1]["training"]["split"]  # the same patients
    assert metas[0]["metrics"]["val"]["n"] == metas[1]["metrics"]["val"]["n"] > 0
    assert any(not np.allclose(a, b) for a, b in zip(*weights, strict=True))


def test_the_tumour_weights_average_one_over_the_slice_and_no_outline_stays_zero():
    masks = np.zeros((3, 8, 8, 1), np.float32)
    masks[0, 2:4, 2:6] = 1.0  # 8 of 64 pixels
    masks[2] = 1.0
    w = tumour_weights(masks)
    np.testing.assert_allclose(w.mean(axis=(1, 2, 3)), [1.0, 0.0, 1.0])
    assert w[0, 2, 2, 0] == pytest.approx(8.0) and w[0, 0, 0, 0] == 0.0
    np.testing.assert_allclose(np.asarray(_tumour_weights_tf(tf.constant(masks[0]), 0.0)), w[0], rtol=1e-6)
    assert not np.any(np.asarray(_tumour_weights_tf(tf.constant(masks[0]), 1.0)))  # always dropped
    resized = prepare_masks([np.ones((100, 60), bool), None, np.zeros((10, 10), bool)], 16)
    assert resized.shape == (3, 16, 16, 1) and resized[0].all() and not resized[1:].any()


def test_a_dataset_with_outlines_gives_the_classifier_image_and_tumour_weights():
    rng = np.random.default_rng(0)
    images = rng.random((4, 8, 8, 1)).astype(np.float32)
    masks = np.zeros_like(images)
    masks[:, 1:3, 1:3] = 1.0
    labels = np.array([0, 1, 2, 0])
    (x, w), y = next(iter(make_classification_dataset(images, labels, batch_size=4, masks=masks)))
    np.testing.assert_array_equal(np.asarray(x), images)
    np.testing.assert_allclose(np.asarray(w), tumour_weights(masks), rtol=1e-6)
    assert np.asarray(y).argmax(axis=1).tolist() == [0, 1, 2, 0]
    x_only, _ = next(iter(make_classification_dataset(images, labels, batch_size=4)))
    assert tuple(x_only.shape) == (4, 8, 8, 1)


@pytest.mark.slow
def test_a_classifier_that_reads_the_outline_pools_over_it_and_round_trips(tmp_path):
    spec = {"input_size": 32, "base_filters": 4, "depth": 2, "hidden": 8, "dropout": 0.0}
    spec["tumour_input"] = True
    model = build_type_classifier(**spec)
    assert [i.name for i in model.inputs] == ["image", "tumour"]
    unet = build_model("unet", input_size=32, base_filters=4, depth=2)
    assert len(transfer_weights(unet, model)) == 3 * 4  # the same encoder: a U-Net still seeds it
    path = save_bundle(
        model,
        tmp_path,
        "tcr",
        {"task": "tumour_type_classification", "classes": list(TUMOUR_TYPES), "spec": spec, "tta": False},
        rebuild=lambda: build_type_classifier(**spec),
    )
    loaded = load_type_classifier(path)
    assert loaded.takes_outline and loaded.input_size == 32
    image = (np.random.default_rng(2).random((64, 64)) * 255).astype(np.uint8)
    left, right = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    left[20:40, 4:20], right[20:40, 44:60] = True, True
    x = prepare([image], 32)

    def direct(mask):
        return np.asarray(model([x, tumour_weights(prepare_masks([mask], 32))]))[0]

    for mask in (left, right, None):
        got = loaded.predict(image, mask)
        np.testing.assert_allclose([got[t] for t in TUMOUR_TYPES], direct(mask), atol=1e-5)
    assert not np.allclose(direct(left), direct(right))  # where the tumour is changes the answer
    np.testing.assert_allclose(loaded.probabilities([image]), [direct(None)], atol=1e-5)  # no outline
    with pytest.raises(ValueError, match="1 images but 2 outlines"):
        loaded.probabilities([image], [left, right])
    loaded.use_openvino()
    assert loaded.runtime == "tensorflow"  # two inputs: it stays on TensorFlow


def test_the_tumour_region_option_reaches_the_config_and_the_spec():
    parser = argparse.ArgumentParser()
    add_arguments(parser, ENCODERS, AUGMENTATIONS)
    add_tumour_region_argument(parser)
    parser.add_argument("--data", default="data")
    parser.add_argument("--output-dir", default="out")
    cfg = config_from_args(vars(parser.parse_args(["--tumour-region"])))
    assert cfg.tumour_region and cfg.spec()["tumour_input"] is True
    assert "tumour_input" not in _classifier_options().spec()  # earlier bundles' specs are unchanged
    with pytest.raises(SystemExit):  # not offered where the classifier is trained for serving
        _classifier_options("--tumour-region")


@pytest.mark.slow
@pytest.mark.realdata
def test_a_classifier_trained_on_the_tumour_region_records_it(figshare_dir, tmp_path):
    cfg = tiny_classifier(figshare_dir, tmp_path, "tc_region", limit=8, tumour_region=True)
    result = train_type_classifier(cfg, log=lambda _: None, verbose=0)
    meta = json.loads((tmp_path / "bundles" / "tc_region.json").read_text())
    assert meta["spec"]["tumour_input"] is True
    assert meta["training"]["tumour_region"]["dropped"] == pytest.approx(0.1)
    assert meta["metrics"]["val"]["n"] == 8
    loaded = load_type_classifier(result["path"])
    image, mask = np.zeros((256, 256), np.uint8), np.zeros((256, 256), bool)
    mask[100:140, 100:140] = True
    assert loaded.takes_outline and loaded.probabilities([image], [mask]).shape == (1, 3)

"""The OpenVINO runtime: the workers' default on a CPU. It must serve the maps TensorFlow makes, from the
shipped bundles, and never talk to the network."""

import socket
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ml.data import load_slices, read_records
from ml.inference import (
    _forward_together,
    load_segmenter,
    openvino_forward,
    predict_proba_together,
    resolve_runtime,
    save_bundle,
)
from ml.models import ModelSpec
from ml.type_classification import load_type_classifier

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = ("unet", "attention_unet", "unet_plus_plus")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    spec = ModelSpec(architecture="unet", input_size=32, base_filters=4, depth=3)
    meta = {"spec": spec.get_config(), "threshold": 0.5, "tta": True, "tta_scales": [1.0, 1.15]}
    return save_bundle(spec.build(), tmp_path_factory.mktemp("models"), "tiny_ov", meta)


def test_auto_is_openvino_on_a_cpu_and_tensorflow_beside_a_gpu(monkeypatch):
    choose = resolve_runtime.__wrapped__  # resolve_runtime remembers its answer for the process
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert choose("auto") == "openvino"
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    assert choose("auto") == "tensorflow"
    assert choose("openvino") == "openvino" and choose("tensorflow") == "tensorflow"


def test_an_unknown_runtime_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, tensorflow, openvino; got 'onnx'"):
        resolve_runtime("onnx")


def test_each_runtime_is_loaded_once_and_says_which_it_is(tiny):
    tf_seg, ov_seg = load_segmenter(tiny), load_segmenter(tiny, runtime="openvino")
    assert (tf_seg.runtime, ov_seg.runtime) == ("tensorflow", "openvino")
    assert load_segmenter(tiny, runtime="openvino") is ov_seg and tf_seg is not ov_seg


def test_openvino_opens_no_connection(tiny, monkeypatch):
    # OpenVINO's conversion tool reports usage to Intel unless opted out; a worker in a hospital must not.
    attempts = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        attempts.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: attempts.append(address))
    seg = load_segmenter(tiny, precision="fp32", runtime="openvino")  # not cached yet: converts here
    seg.predict_proba([np.random.default_rng(0).random((40, 40))])
    assert attempts == []


def test_tiny_model_maps_agree_between_runtimes_with_tta_and_zoom(tiny):
    rng = np.random.default_rng(1)
    images = [rng.random((40, 40)), rng.random((50, 30)), rng.random((32, 32))]
    tf_maps = load_segmenter(tiny).predict_proba(images)
    ov_maps = load_segmenter(tiny, runtime="openvino").predict_proba(images)
    for a, b in zip(tf_maps, ov_maps, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_shipped_models_make_the_same_maps_and_masks_under_openvino(figshare_dir):
    """Real slices, the shipped bundles with their own TTA and zooms, all three in one call as a worker
    makes them: every map within 1e-5 of TensorFlow's, so the published Dice carries over."""
    records = read_records(figshare_dir)
    picked = [
        next(r for r in records if r.tumour_type == t).id for t in ("meningioma", "glioma", "pituitary")
    ]
    images = load_slices(figshare_dir, picked).images
    paths = [MODELS / f"{name}.keras" for name in SHIPPED]
    tf_maps = predict_proba_together([load_segmenter(p) for p in paths], images)
    ov_segs = [load_segmenter(p, runtime="openvino") for p in paths]
    ov_maps = predict_proba_together(ov_segs, images)
    for seg, per_tf, per_ov in zip(ov_segs, tf_maps, ov_maps, strict=True):
        for a, b in zip(per_tf, per_ov, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-5)
            changed = np.count_nonzero(seg.binarize(a) != seg.binarize(b))
            assert changed <= a.size * 1e-4, f"{seg.name}: {changed} mask pixels differ"


def test_bf16_is_a_choice_that_stays_close_to_float32(tiny):
    image = np.random.default_rng(2).random((32, 32))
    fp32 = load_segmenter(tiny, runtime="openvino").predict_proba([image])[0]
    bf16 = load_segmenter(tiny, precision="bf16", runtime="openvino").predict_proba([image])[0]
    np.testing.assert_allclose(bf16, fp32, atol=0.05)


def test_tiny_model_embeddings_agree_between_runtimes(tiny):
    image = np.random.default_rng(3).random((40, 40))
    mask = np.zeros((40, 40), bool)
    mask[10:20, 15:30] = True
    for with_mask in (None, mask):
        a = load_segmenter(tiny).embed(image, with_mask)
        b = load_segmenter(tiny, runtime="openvino").embed(image, with_mask)
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_shipped_embedding_and_type_classifier_agree_between_runtimes(figshare_dir):
    """The similar cases and the type suggestion a worker makes under OpenVINO are TensorFlow's: the
    embedding (of the shipped U-Net, on the expert mask) within 1e-5 and the classifier's probabilities
    within 1e-5, on real slices of each type."""
    records = read_records(figshare_dir)
    picked = [
        next(r for r in records if r.tumour_type == t).id for t in ("meningioma", "glioma", "pituitary")
    ]
    data = load_slices(figshare_dir, picked)
    tf_seg = load_segmenter(MODELS / "unet.keras")
    ov_seg = load_segmenter(MODELS / "unet.keras", runtime="openvino")
    for image, mask in zip(data.images, data.masks, strict=True):
        assert mask.any()
        np.testing.assert_allclose(ov_seg.embed(image, mask), tf_seg.embed(image, mask), atol=1e-5)
    path = MODELS / "type_classifier" / "type_classifier.keras"
    tf_probs = load_type_classifier(path).probabilities(data.images)
    ov_classifier = load_type_classifier(path, runtime="openvino")
    assert (
        ov_classifier.runtime == "openvino"
        and load_type_classifier(path, runtime="openvino") is ov_classifier
    )
    np.testing.assert_allclose(ov_classifier.probabilities(data.images), tf_probs, atol=1e-5)


def test_a_batch_split_over_openvino_streams_is_the_batch_run_whole(tiny):
    """The maps are compiled for throughput and a batch is split over the requests; a single sample runs
    on a latency-compiled copy. Every batch size gives what one latency request gives, and two models
    started side by side give what each gives alone."""
    seg = load_segmenter(tiny, runtime="openvino")
    whole = openvino_forward(seg._forward, "fp32")
    split = openvino_forward(seg._forward, "fp32", streams=True)
    assert len(whole._latency) == 1 and split._throughput and split._latency is None
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 5, 8):
        x = rng.random((n, 32, 32, 1), dtype=np.float32)
        np.testing.assert_allclose(split(x), whole(x), atol=1e-6)
    assert split._latency is not None or len(split._throughput) == 1  # the one-sample batch

    other = load_segmenter(tiny, runtime="openvino", precision="bf16")
    x, y = rng.random((4, 32, 32, 1), dtype=np.float32), rng.random((3, 32, 32, 1), dtype=np.float32)
    alone = [seg.forward(x), other.forward(y)]
    together = _forward_together([seg, other], [x, y])
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(b, a)

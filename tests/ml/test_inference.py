"""Inference cache, sizes, TTA, embedding and the ensemble."""

import json
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

from ml import losses
from ml.calibrate import calibrate
from ml.data import Record, Slices
from ml.inference import (
    Ensemble,
    Segmenter,
    check_scales,
    ensemble_proba,
    load_ensemble,
    load_segmenter,
    predict_proba_together,
    resolve_precision,
    save_bundle,
    zoom_view,
)
from ml.models import ModelSpec, build_model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    spec = ModelSpec(architecture="unet", input_size=32, base_filters=4, depth=3)
    path = save_bundle(
        spec.build(),
        tmp_path_factory.mktemp("models"),
        "tiny",
        {
            "spec": spec.get_config(),
            "threshold": 0.4,
            "postprocess": {"keep_largest": True, "min_component_px": 0},
        },
    )
    return path


def test_it_loads_once_per_process(bundle):
    assert load_segmenter(bundle) is load_segmenter(bundle)
    assert load_segmenter(bundle).threshold == 0.4


def test_masks_come_back_at_the_original_size(bundle):
    seg = load_segmenter(bundle)
    images = [np.random.rand(50, 70), (np.random.rand(256, 256) * 255).astype(np.uint8), np.zeros((33, 33))]
    probs = seg.predict_proba(images)
    assert [p.shape for p in probs] == [(50, 70), (256, 256), (33, 33)]
    assert all(p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1 for p in probs)
    masks = seg.segment(images, tta=True)
    assert [m.shape for m in masks] == [(50, 70), (256, 256), (33, 33)]


def test_batched_and_single_calls_agree(bundle):
    seg = load_segmenter(bundle)
    images = [np.random.default_rng(i).random((40, 40)) for i in range(5)]
    together = seg.predict_proba(images, batch_size=4)
    alone = [seg.predict_proba([img])[0] for img in images]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_tta_averages_the_flipped_prediction(bundle):
    seg = load_segmenter(bundle)
    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    plain = seg.predict_proba([img])[0]
    flipped = seg.predict_proba([img[:, ::-1].copy()])[0][:, ::-1]
    np.testing.assert_allclose(seg.predict_proba([img], tta=True)[0], (plain + flipped) / 2, atol=1e-5)


def test_embedding_pools_the_bottleneck_over_the_tumour(bundle):
    seg = load_segmenter(bundle)
    img = np.random.default_rng(1).random((64, 64))
    mask = np.zeros((64, 64), bool)
    mask[5:20, 5:20] = True
    with_mask = seg.embed(img, mask)
    without = seg.embed(img)
    channels = seg.model.get_layer("bottleneck_relu2").output.shape[-1]
    assert with_mask.shape == without.shape == (2 * channels,)
    np.testing.assert_allclose(with_mask[channels:], without[channels:], atol=1e-5)  # global half is the same


def test_fp32_rebuild_keeps_the_weights(bundle):
    saved = load_segmenter(bundle)
    fp32 = load_segmenter(bundle, precision="fp32")
    img = [np.random.default_rng(2).random((32, 32))]
    np.testing.assert_allclose(fp32.predict_proba(img)[0], saved.predict_proba(img)[0], atol=1e-4)


def test_ensemble_averages_its_members(bundle):
    seg = load_segmenter(bundle)
    ens = Ensemble([seg, seg])
    img = [np.random.default_rng(3).random((32, 32))]
    np.testing.assert_allclose(ens.predict_proba(img)[0], seg.predict_proba(img)[0], atol=1e-6)
    assert ens.threshold == 0.4 and ens.keep_largest
    np.testing.assert_allclose(ensemble_proba([np.zeros((2, 2)), np.ones((2, 2))]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError):
        ensemble_proba([])


def test_a_bundle_without_metadata_is_refused(tmp_path):
    path = tmp_path / "orphan.keras"
    build_model("unet", input_size=32, base_filters=2, depth=2).save(path)
    with pytest.raises(FileNotFoundError, match="metadata"):
        load_segmenter(path)


def test_precision_auto_resolves_to_a_real_policy():
    assert resolve_precision("auto") in {"fp32", "bf16"}
    assert resolve_precision("fp32") == "fp32"


def test_the_ensemble_uses_its_calibration_file_for_the_same_members(bundle, tmp_path):

    seg = load_segmenter(bundle)
    (tmp_path / "ensemble.json").write_text(
        json.dumps(
            {
                "members": [seg.name],
                "threshold": 0.65,
                "tta": True,
                "postprocess": {"keep_largest": False, "min_component_px": 3},
            }
        )
    )
    ens = load_ensemble(tmp_path, [seg])
    assert (ens.threshold, ens.tta, ens.keep_largest, ens.min_component_px) == (0.65, True, False, 3)
    assert load_ensemble(tmp_path / "nothing-here", [seg]).tta is None  # members use their own
    other = load_ensemble(tmp_path, [seg, seg.__class__(seg.model, {"name": "other"})])
    assert other.threshold != 0.65  # calibrated for other members: falls back to the members' own


def test_calibration_picks_what_scores_best_on_validation():
    class Oracle:
        """Probabilities that are right only at threshold > 0.6, and only without TTA."""

        def predict_proba(self, images, tta=False):
            out = []
            for img in images:
                p = np.where(img > 0, 0.7, 0.55).astype(np.float32)
                out.append(p if not tta else np.full_like(p, 0.5))
            return out

    truth = np.zeros((16, 16), bool)
    truth[4:9, 4:9] = True
    val = Slices([Record("1", "glioma", "g1")], [truth.astype(np.uint8)], [truth])
    choice = calibrate(Oracle(), val)
    assert choice["tta"] is False and choice["threshold"] >= 0.55
    assert choice["val_metrics"]["dice_mean"] == pytest.approx(1.0)
    assert choice["val_metrics"]["dice_by_type"] == {"glioma": pytest.approx(1.0)}


def test_a_bundle_carries_no_optimizer_state(tmp_path):

    model = build_model("unet", input_size=32, base_filters=2, depth=2)
    model.compile(optimizer=keras.optimizers.Adam(), loss=losses.bce_dice_loss)
    model.train_on_batch(np.zeros((1, 32, 32, 1), np.float32), np.zeros((1, 32, 32, 1), np.float32))
    path = save_bundle(model, tmp_path, "lean", {})
    with zipfile.ZipFile(path) as zf:
        zf.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5") as h5:
        stored = []
        h5.visititems(lambda name, obj: stored.append(name) if isinstance(obj, h5py.Dataset) else None)
    assert stored and not [name for name in stored if name.startswith("optimizer")]


def test_a_bundle_trained_in_bf16_is_saved_in_float32_with_the_same_weights(tmp_path):

    spec = ModelSpec(architecture="attention_unet", input_size=32, base_filters=4, depth=2)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trained = spec.build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "bfloat16" in {layer.compute_dtype for layer in trained.layers if layer.weights}
    path = save_bundle(trained, tmp_path, "bf16_trained", {"spec": spec.get_config(), "threshold": 0.5})
    loaded = load_segmenter(path).model
    assert {layer.dtype_policy.name for layer in loaded.layers if layer.weights} == {"float32"}
    for saved, original in zip(loaded.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, original)


def test_segmenter_and_ensemble_masks_follow_keep_by_from_their_metadata(bundle, tmp_path):

    seg = load_segmenter(bundle)
    prob = np.zeros((20, 20), np.float32)
    prob[2:8, 2:8] = 0.6  # larger, less confident component
    prob[14:16, 14:16] = 0.9  # smaller, confident one
    by_area = Segmenter(seg.model, {"name": "a", "threshold": 0.5, "postprocess": {"keep_largest": True}})
    by_peak = Segmenter(
        seg.model, {"name": "p", "threshold": 0.5, "postprocess": {"keep_largest": True, "keep_by": "peak"}}
    )
    assert by_area.binarize(prob).sum() == 36 and by_peak.binarize(prob).sum() == 4
    (tmp_path / "ensemble.json").write_text(
        json.dumps(
            {
                "members": [seg.name],
                "threshold": 0.5,
                "postprocess": {"keep_largest": True, "keep_by": "peak"},
            }
        )
    )
    ens = load_ensemble(tmp_path, [seg])
    assert ens.postprocess["keep_by"] == "peak" and ens.binarize(prob).sum() == 4


def test_zoom_views_map_back_onto_the_slice():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    view, place = zoom_view(img, 1.25)  # zoom in: the centred 8 x 8 crop
    np.testing.assert_array_equal(view, img[1:9, 1:9])
    prob, weight = place(np.full((8, 8), 0.7, np.float32), (10, 10))
    assert (
        weight.sum() == 64 and weight[1:9, 1:9].all() and prob[0].max() == 0 and prob[1:9, 1:9].min() == 0.7
    )

    view, place = zoom_view(img, 0.8)  # zoom out: 10 / 0.8 = 12.5, so round(1.25) = 1 pixel of padding a side
    assert view.shape == (12, 12) and view[0].max() == img.min() and (view[1:11, 1:11] == img).all()
    marked = np.zeros((12, 12), np.float32)
    marked[1:11, 1:11] = 1.0
    prob, weight = place(marked, (10, 10))
    assert prob.min() == 1.0 and weight.min() == 1.0 and prob.shape == (10, 10)

    view, place = zoom_view(img, 1.0)
    assert view is img and place(img, (10, 10))[1].min() == 1.0


def test_zoom_tta_averages_each_pixel_over_the_views_that_cover_it(bundle):
    seg = load_segmenter(bundle)
    img = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    whole = seg.predict_proba([img], scales=(1.0,))[0]
    crop = seg.predict_proba([img[2:37, 2:37]], scales=(1.0,))[
        0
    ]  # round(40 / 1.15) = 35, offset (40 - 35) // 2 = 2
    both = seg.predict_proba([img], scales=(1.0, 1.15))[0]
    np.testing.assert_allclose(both[2:37, 2:37], (whole[2:37, 2:37] + crop) / 2, atol=1e-5)
    np.testing.assert_allclose(both[0], whole[0], atol=1e-6)  # the border is only in the whole view
    np.testing.assert_allclose(seg.predict_proba([img])[0], whole, atol=1e-6)  # the bundle's default: no zoom


def test_zoom_scales_must_cover_the_slice():
    assert check_scales([0.87, 1, 1.15]) == (0.87, 1.0, 1.15)
    for bad in ([], [1.15], [1.0, 3.0], [0.1, 1.0]):
        with pytest.raises(ValueError, match="tta_scales"):
            check_scales(bad)


def test_calibration_chooses_zoom_tta_and_predicts_each_view_once():
    truth = np.zeros((16, 16), bool)
    truth[4:9, 4:9] = True
    calls = []

    class Zoomed:
        """Only the zoomed-in view finds the tumour; the flipped views see nothing."""

        def view_proba(self, images, *, scale=1.0, tta=False, flip_only=False):
            calls.append((scale, flip_only))
            if flip_only:
                maps = [np.full((16, 16), 0.5, np.float32) for _ in images]
            elif scale > 1:
                maps = [np.where(truth, 0.95, 0.05).astype(np.float32) for _ in images]
            else:
                maps = [np.full((16, 16), 0.55, np.float32) for _ in images]
            return [(m, np.ones_like(m)) for m in maps]

    val = Slices([Record("1", "glioma", "g1")], [truth.astype(np.uint8)], [truth])
    choice = calibrate(Zoomed(), val)
    # (1, 1.15) gives 0.75 inside and 0.30 outside; (0.87, 1, 1.15) also separates them, but ties and
    # the earlier, cheaper candidate is kept.
    assert choice["tta"] is False and choice["tta_scales"] == [1.0, 1.15]
    assert choice["val_metrics"]["dice_mean"] == pytest.approx(1.0)
    assert sorted(calls) == sorted({(s, f) for s in (0.87, 1.0, 1.15) for f in (False, True)})


def test_a_recalibrated_json_is_picked_up_without_a_restart(tmp_path):

    spec = ModelSpec(architecture="unet", input_size=32, base_filters=4, depth=3)
    path = save_bundle(spec.build(), tmp_path, "tiny2", {"spec": spec.get_config(), "threshold": 0.4})
    first = load_segmenter(path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta.update(threshold=0.25, tta_scales=[1.0, 1.15])
    meta_path.write_text(json.dumps(meta))
    stat = meta_path.stat()
    os.utime(
        meta_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9)
    )  # a distinct mtime even on coarse clocks
    second = load_segmenter(path)
    assert first.threshold == 0.4 and (second.threshold, second.tta_scales) == (0.25, (1.0, 1.15))


def test_every_view_of_a_slice_goes_through_the_model_in_one_call(bundle, monkeypatch):
    seg = load_segmenter(bundle)
    img = np.random.default_rng(4).random((40, 40)).astype(np.float32)
    expected = seg.predict_proba([img], tta=True, scales=(1.0, 1.15))[0]
    calls = []
    real = seg._forward
    monkeypatch.setattr(seg, "_forward", lambda x: calls.append(len(x)) or real(x))
    got = seg.predict_proba([img], tta=True, scales=(1.0, 1.15))[0]
    assert calls == [4]  # two zooms, each with its mirror image
    np.testing.assert_array_equal(got, expected)


def test_models_run_together_give_what_each_gives_alone(bundle, tmp_path):
    spec = ModelSpec(architecture="unet", input_size=32, base_filters=2, depth=2)
    meta = {"spec": spec.get_config(), "threshold": 0.5, "tta": True, "tta_scales": [1.0, 1.15]}
    other = load_segmenter(save_bundle(spec.build(), tmp_path, "tiny_other", meta))
    seg = load_segmenter(bundle)
    rng = np.random.default_rng(5)
    images = [rng.random((40, 40)), rng.random((50, 30)), rng.random((32, 32))]
    together = predict_proba_together([seg, other], images, batch_size=4)
    for model, maps in zip((seg, other), together, strict=True):
        for img, prob in zip(images, maps, strict=True):
            np.testing.assert_allclose(prob, model.predict_proba([img])[0], atol=1e-5)

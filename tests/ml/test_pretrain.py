"""Self-supervised pretraining (``python -m ml.pretrain``): the distortions of Models Genesis, a run that
learns to restore the slices without reading a mask, and a segmenter fine-tuned from it on the same fold."""

import json

import numpy as np
import pytest

from ml import losses
from ml.pretrain import main, pretrain
from ml.training.genesis import (
    Distortions,
    distort,
    inpaint,
    intensity_curve,
    local_shuffle,
    outpaint,
    restoration_batches,
)
from ml.training.loop import train
from tests.ml.builders import tiny_segmenter


def _slice(size: int = 64) -> np.ndarray:
    y, x = np.mgrid[:size, :size] / (size - 1)
    return ((x + y) / 2).astype(np.float32)  # a ramp: every pixel value distinct along the diagonal


def test_the_intensity_curve_keeps_the_ends_and_bends_what_lies_between():
    image = _slice()
    for seed in range(20):
        out = intensity_curve(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.float32
        ends = (float(out[0, 0]), float(out[-1, -1]))
        assert ends in ((0.0, 1.0), (1.0, 0.0))  # from (0, 0) to (1, 1), or inverted
        assert not np.allclose(out, image) and not np.allclose(out, 1 - image)


def test_local_shuffling_moves_pixels_within_small_windows_only():
    image = _slice()
    out = local_shuffle(image, np.random.default_rng(0), windows=50)
    assert not np.array_equal(out, image)
    assert np.array_equal(np.sort(out, axis=None), np.sort(image, axis=None))  # the same values, moved
    # no pixel travels further than a window's side, a tenth of the slice's
    moved = np.abs(out - image).max()
    assert moved <= (2 * 64 // 10) / (2 * 63) + 1e-6


def test_inpainting_paints_boxes_and_outpainting_keeps_boxes():
    image = np.full((60, 60), 0.5, np.float32)
    inside = inpaint(image, np.random.default_rng(1))
    painted = inside != 0.5
    assert 0 < painted.mean() < 0.6  # one to five boxes of a sixth to a third of each side
    outside = outpaint(image, np.random.default_rng(1))
    kept = outside == 0.5
    assert 3 / 7 * 3 / 7 * 0.9 < kept.mean() < 0.9  # at least one box of 3/7 to 4/7 per side kept
    assert outside.min() >= 0.0 and outside.max() <= 1.0  # the noise is uniform on [0, 1)


def test_distortions_are_drawn_from_the_seed_and_switch_off_with_their_rates():
    image = _slice()
    a, b = distort(image, np.random.default_rng(3)), distort(image, np.random.default_rng(3))
    assert np.array_equal(a, b) and a.min() >= 0.0 and a.max() <= 1.0
    none = Distortions(intensity=0.0, local_shuffle=0.0, paint=0.0)
    assert np.array_equal(distort(image, np.random.default_rng(3), none), image)


def test_each_epoch_sees_every_slice_once_with_new_distortions_and_a_resumed_run_the_same_ones():
    images = (np.arange(10, dtype=np.float32)[:, None, None, None] / 10) * np.ones(
        (10, 16, 16, 1), np.float32
    )
    batches = restoration_batches(images, batch_size=4, seed=5)
    first = [batches[i] for i in range(len(batches))]
    assert len(batches) == 3
    targets = np.concatenate([t for _, t in first])
    assert sorted(targets[:, 0, 0, 0].round(1)) == [i / 10 for i in range(10)]  # each slice once
    batches.on_epoch_end()
    second = [batches[i] for i in range(len(batches))]
    assert not np.array_equal(first[0][0], second[0][0])  # another epoch, other draws
    resumed = restoration_batches(images, batch_size=4, seed=5, first_epoch=1)
    assert all(
        np.array_equal(a[0], b[0]) for a, b in zip(second, [resumed[i] for i in range(3)], strict=True)
    )


def test_psnr_is_high_for_a_close_restoration_and_low_for_noise():
    clean = np.repeat(_slice(32)[None, ..., None], 2, axis=0)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.3, clean.shape), 0, 1).astype(np.float32)
    close = np.asarray(losses.psnr(clean, clean + 0.01))
    assert close.shape == (2,) and np.allclose(close, 40.0, atol=0.01)
    assert float(np.mean(losses.psnr(clean, noisy))) < 15.0


@pytest.mark.slow
def test_pretraining_restores_without_masks_and_seeds_a_segmenter_of_the_same_fold(tmp_path):
    cfg = tiny_segmenter(tmp_path, "pre", epochs=2, fold=1, output_dir=str(tmp_path / "pretrain"))
    messages = []
    meta = pretrain(cfg, log=messages.append, verbose=0)
    written = json.loads((tmp_path / "pretrain" / "pre.json").read_text())
    assert written == json.loads(json.dumps(meta)) and written["name"] == "pre"
    ssl = meta["self_supervised"]
    assert ssl["fold"] == 1 and ssl["seed"] == 42 and ssl["loss"] == "mse"
    assert meta["training"]["epochs_done"] == 2 and meta["training"]["split"]["fold"] == 1
    assert np.isfinite(ssl["val_psnr_db"]) and np.isfinite(ssl["val_psnr_db_of_the_distorted_input"])
    assert "threshold" not in meta  # not a segmenter's bundle
    assert any(m.startswith("validation PSNR") and "--fold 1" in m for m in messages)

    # a rerun of a finished run trains no more
    again = pretrain(cfg, log=messages.append, verbose=0)
    assert again["training"]["epochs_done"] == 2

    # a later session continues it as a new run, from the saved weights
    more = tiny_segmenter(tmp_path, "pre2", epochs=1, fold=1, output_dir=str(tmp_path / "pretrain"))
    more.init_from = str(tmp_path / "pretrain" / "pre.keras")
    continued = pretrain(more, log=messages.append, verbose=0)
    start = continued["initialised_from"]
    assert start["source"]["self_supervised"]["fold"] == 1
    assert start["layers_copied"] == start["layers_with_weights"]

    # the segmenter of the same fold starts from every layer and records where they came from
    seg = tiny_segmenter(tmp_path, "tuned", fold=1, init_from=str(tmp_path / "pretrain" / "pre.keras"))
    tuned = train(seg, verbose=0, log=lambda m: None)
    start = tuned["initialised_from"]
    assert start["layers_copied"] == start["layers_with_weights"]
    assert start["source"]["self_supervised"]["fold"] == 1

    # another fold's segmenter is refused: the pretraining read its validation patients' images
    other = tiny_segmenter(tmp_path, "leaky", fold=0, init_from=str(tmp_path / "pretrain" / "pre.keras"))
    with pytest.raises(ValueError, match=r"pretrained on the training patients of split seed 42, fold 1"):
        train(other, verbose=0, log=lambda m: None)


def test_the_command_line_refuses_a_model_of_several_heads(tmp_path, capsys):
    recipe = tmp_path / "ds.json"
    recipe.write_text(
        json.dumps({"spec": {"architecture": "unet_plus_plus", "deep_supervision": True, "input_size": 32}})
    )
    with pytest.raises(SystemExit):
        main(["--like", str(recipe), "--data", str(tmp_path), "--name", "x"])
    assert "without deep supervision" in capsys.readouterr().err

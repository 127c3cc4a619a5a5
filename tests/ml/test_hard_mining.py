"""Hard-example mining (``--hard-mining``): after each epoch the training slices the model outlines worst
are drawn more often in the next; the weights move with the model, the run logs what mining found."""

import csv

import keras
import numpy as np
import pytest

from ml.data import DrawWeights, make_dataset
from ml.training.config import TrainConfig
from ml.training.loop import train
from ml.training.mining import hard_example_mining, mask_output, mined_weights, slice_dice
from tests.ml.builders import tiny_segmenter


def _indices(dataset) -> np.ndarray:
    """Which slice each draw was: the slices' images are filled with their index / 100."""
    return np.concatenate([np.rint(np.asarray(x)[:, 0, 0, 0] * 100).astype(int) for x, _ in dataset])


def test_slice_dice_scores_each_slice_and_two_empty_masks_agree():
    truth = np.zeros((3, 4, 4, 1), bool)
    truth[0, :2] = truth[1, :2] = True
    pred = np.zeros_like(truth)
    pred[0, :2] = True  # perfect
    pred[1, 2:] = True  # elsewhere
    np.testing.assert_allclose(slice_dice(pred, truth), [1.0, 0.0, 1.0])  # the third: both empty
    np.testing.assert_allclose(
        mined_weights(np.array([1.0, 2.0, 1.0]), np.array([1.0, 0.0, 0.5]), 2.0), [1, 6, 2]
    )


def test_the_mask_is_found_in_each_kind_of_model_output():
    mask = np.ones((1, 2, 2, 1))
    assert mask_output({"mask": mask, "tumour_type": np.ones((1, 3))}) is mask
    assert mask_output([np.zeros_like(mask), mask]) is mask
    assert mask_output(mask) is mask


def test_draw_weights_set_after_a_pass_shape_the_next_one():
    n = 10
    images = np.stack([np.full((4, 4, 1), i / 100, np.float32) for i in range(n)])
    masks = np.zeros((n, 4, 4, 1), np.float32)
    draws = DrawWeights([1.0] * n)
    dataset = make_dataset(images, masks, batch_size=n, shuffle=True, draw_weights=draws, seed=3)
    first = np.concatenate([_indices(dataset) for _ in range(20)])
    assert len(set(first.tolist())) == n  # every slice drawn in 200 even draws
    draws.set([1e-6] * (n - 1) + [1.0])  # the last slice all but alone
    later = np.concatenate([_indices(dataset) for _ in range(5)])
    assert (later == n - 1).mean() > 0.95
    with pytest.raises(ValueError, match="one finite weight > 0 per slice"):
        draws.set([1.0] * (n - 1) + [0.0])
    with pytest.raises(ValueError, match="one weight per slice"):
        make_dataset(images[:5], masks[:5], draw_weights=draws)


def test_the_callback_draws_the_slices_the_model_misses_more_often():
    n = 4
    images = np.zeros((n, 8, 8, 1), np.float32)
    masks = np.zeros((n, 8, 8, 1), np.float32)
    masks[:2, 2:6, 2:6] = 1.0  # two slices with a tumour, two without
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(
        inputs, keras.layers.Lambda(lambda x: keras.ops.zeros_like(x))(inputs)
    )  # finds nothing
    draws = DrawWeights([1.0, 2.0, 1.0, 1.0])  # the second slice's type weighs 2
    messages, logs = [], {}
    callback = hard_example_mining(images, masks, draws, 2.0, batch_size=2, log=messages.append)
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    cdf = np.asarray(draws.cdf)
    np.testing.assert_allclose(np.diff(cdf, prepend=0.0), np.array([3.0, 6.0, 1.0, 1.0]) / 11)
    assert logs["train_missed"] == 0.5 and logs["mining_seconds"] >= 0
    assert messages == [
        f"hard-example mining: 50.0% of training slices missed, {logs['mining_seconds']:.0f} s"
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hard_mining": -1.0}, "hard_mining is a strength > 0"),
        ({"distill_from": ["x.keras"]}, "without distillation"),
    ],
)
def test_train_config_refuses_what_mining_cannot_do(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"architecture": "unet", "data_dir": "unused", "hard_mining": 2.0, **changes})


@pytest.mark.slow
def test_a_run_with_hard_mining_logs_what_it_found_and_records_the_strength(tmp_path):
    cfg = tiny_segmenter(tmp_path, "mined", epochs=2, hard_mining=2.0, type_weights={"glioma": 2.0})
    messages = []
    meta = train(cfg, log=messages.append, verbose=0)
    assert meta["training"]["hard_mining"] == 2.0 and meta["training"]["type_weights"] == {"glioma": 2.0}
    log = list(csv.DictReader((tmp_path / "runs" / "mined" / "log.csv").open()))
    assert len(log) == 2 and all(0.0 <= float(row["train_missed"]) <= 1.0 for row in log)
    assert sum(m.startswith("hard-example mining:") for m in messages) == 2

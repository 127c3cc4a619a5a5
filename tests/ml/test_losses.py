"""Losses and metrics against values worked out by hand."""

import numpy as np
import pytest


def _pair():
    # Image 1: truth 4 px, prediction 2 of them + 2 others -> Dice 2*2/(4+4) = 0.5, IoU 2/6.
    # Image 2: truth 2 px, prediction exactly them -> Dice 1, IoU 1.
    t = np.zeros((2, 4, 4, 1), np.float32)
    p = np.zeros((2, 4, 4, 1), np.float32)
    t[0, 0, :4] = 1
    p[0, 0, :2] = 0.9
    p[0, 1, :2] = 0.8
    t[1, 3, :2] = 1
    p[1, 3, :2] = 0.7
    return t, p


def test_dice_and_iou_are_per_image():
    from ml.losses import per_image_dice, per_image_iou

    t, p = _pair()
    np.testing.assert_allclose(np.asarray(per_image_dice(t, p)), [0.5, 1.0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(per_image_iou(t, p)), [1 / 3, 1.0], atol=1e-5)
    # Pooled over the batch, Dice would be 2*4/(6+6) = 0.667, not the per-image mean 0.75.


def test_empty_truth_and_empty_prediction_count_as_perfect_and_one_sided_as_zero():
    from ml.losses import per_image_dice

    empty = np.zeros((1, 4, 4, 1), np.float32)
    one = empty.copy()
    one[0, 0, 0] = 1
    assert float(per_image_dice(empty, empty)[0]) == pytest.approx(1.0)
    assert float(per_image_dice(empty, one)[0]) == pytest.approx(0.0, abs=1e-5)
    assert float(per_image_dice(one, empty)[0]) == pytest.approx(0.0, abs=1e-5)


def test_bce_dice_loss_matches_the_formula():
    from ml.losses import bce_dice_loss

    t = np.array([[[[1.0], [0.0]]]], np.float32)  # one image, 2 pixels
    p = np.array([[[[0.8], [0.4]]]], np.float32)
    bce = -(np.log(0.8) + np.log(0.6)) / 2
    soft_dice = (2 * 0.8 + 1) / (1 + 1.2 + 1)
    assert float(bce_dice_loss(t, p)[0]) == pytest.approx(bce + 1 - soft_dice, rel=1e-5)


def test_focal_loss_is_smaller_for_confident_right_answers():
    from ml.losses import focal_loss

    t = np.ones((1, 2, 2, 1), np.float32)
    sure = float(focal_loss(t, np.full_like(t, 0.95))[0])
    unsure = float(focal_loss(t, np.full_like(t, 0.55))[0])
    assert 0 < sure < unsure
    expected = -0.25 * (1 - 0.55) ** 2 * np.log(0.55)
    assert unsure == pytest.approx(expected, rel=1e-5)


def test_numpy_evaluation_agrees_with_the_keras_metric():
    from ml.evaluate import dice_iou
    from ml.losses import per_image_dice

    t, p = _pair()
    d, i = dice_iou(p[0, ..., 0] > 0.5, t[0, ..., 0] > 0.5)
    assert d == pytest.approx(float(per_image_dice(t, p)[0]), abs=1e-6)
    assert i == pytest.approx(1 / 3, abs=1e-6)

"""Losses and metrics against values worked out by hand."""

import numpy as np
import pytest

from ml.evaluate import dice_iou
from ml.losses import bce_dice_loss, focal_loss, get_loss, lovasz_hinge_loss, per_image_dice, per_image_iou


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
    t, p = _pair()
    np.testing.assert_allclose(np.asarray(per_image_dice(t, p)), [0.5, 1.0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(per_image_iou(t, p)), [1 / 3, 1.0], atol=1e-5)
    # Pooled over the batch, Dice would be 2*4/(6+6) = 0.667, not the per-image mean 0.75.


def test_empty_truth_and_empty_prediction_count_as_perfect_and_one_sided_as_zero():
    empty = np.zeros((1, 4, 4, 1), np.float32)
    one = empty.copy()
    one[0, 0, 0] = 1
    assert float(per_image_dice(empty, empty)[0]) == pytest.approx(1.0)
    assert float(per_image_dice(empty, one)[0]) == pytest.approx(0.0, abs=1e-5)
    assert float(per_image_dice(one, empty)[0]) == pytest.approx(0.0, abs=1e-5)


def test_bce_dice_loss_matches_the_formula():
    t = np.array([[[[1.0], [0.0]]]], np.float32)  # one image, 2 pixels
    p = np.array([[[[0.8], [0.4]]]], np.float32)
    bce = -(np.log(0.8) + np.log(0.6)) / 2
    soft_dice = (2 * 0.8 + 1) / (1 + 1.2 + 1)
    assert float(bce_dice_loss(t, p)[0]) == pytest.approx(bce + 1 - soft_dice, rel=1e-5)


def test_focal_loss_is_smaller_for_confident_right_answers():
    t = np.ones((1, 2, 2, 1), np.float32)
    sure = float(focal_loss(t, np.full_like(t, 0.95))[0])
    unsure = float(focal_loss(t, np.full_like(t, 0.55))[0])
    assert 0 < sure < unsure
    expected = -0.25 * (1 - 0.55) ** 2 * np.log(0.55)
    assert unsure == pytest.approx(expected, rel=1e-5)


def test_numpy_evaluation_agrees_with_the_keras_metric():
    t, p = _pair()
    d, i = dice_iou(p[0, ..., 0] > 0.5, t[0, ..., 0] > 0.5)
    assert d == pytest.approx(float(per_image_dice(t, p)[0]), abs=1e-6)
    assert i == pytest.approx(1 / 3, abs=1e-6)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_lovasz_hinge_matches_a_hand_computed_case():
    # Two pixels: tumour with logit 0.5 (hinge error 0.5), background with logit 1.0 (error 2.0).
    # Sorted errors [2.0, 0.5] over truth [0, 1]: Jaccard losses [1 - 1/2, 1 - 0/2] = [0.5, 1.0],
    # so the Lovász weights are [0.5, 0.5] and the loss is 2.0 * 0.5 + 0.5 * 0.5 = 1.25.
    t = np.array([[[[1.0], [0.0]]]], np.float32)
    p = _sigmoid([[[[0.5], [1.0]]]]).astype(np.float32)
    assert float(lovasz_hinge_loss(t, p)[0]) == pytest.approx(1.25, rel=1e-4)


def test_lovasz_hinge_bounds_zero_for_confident_right_answers_and_one_at_even_odds():
    t = np.zeros((1, 4, 4, 1), np.float32)
    t[0, 1:3, 1:3] = 1
    confident = np.where(t > 0, 0.95, 0.05).astype(np.float32)  # |logit| 2.9 > 1: every hinge error < 0
    assert float(lovasz_hinge_loss(t, confident)[0]) == pytest.approx(0.0, abs=1e-6)
    # Logit 0 everywhere: every error is 1 and the weights sum to the Jaccard loss of all-positive
    # predictions against no overlap counted, i.e. 1.
    assert float(lovasz_hinge_loss(t, np.full_like(t, 0.5))[0]) == pytest.approx(1.0, rel=1e-5)


def test_lovasz_hinge_is_per_image_and_matches_the_papers_algorithm():
    def reference(truth, logits):  # Berman et al. 2018, Algorithm 1, one image, plain numpy
        truth, logits = truth.ravel().astype(np.float64), logits.ravel()
        errors = 1.0 - logits * (2 * truth - 1)
        order = np.argsort(-errors, kind="stable")
        gt = truth[order]
        inter = gt.sum() - np.cumsum(gt)
        union = gt.sum() + np.cumsum(1 - gt)
        jac = 1 - inter / union
        jac[1:] = jac[1:] - jac[:-1]
        return float(np.dot(np.maximum(errors[order], 0), jac))

    rng = np.random.default_rng(3)
    t = (rng.random((3, 8, 8, 1)) < 0.3).astype(np.float32)
    logits = rng.normal(0, 2, size=t.shape)
    p = _sigmoid(logits).astype(np.float32)
    got = np.asarray(lovasz_hinge_loss(t, p))
    want = [
        reference(t[i], np.log(p[i].astype(np.float64)) - np.log1p(-p[i].astype(np.float64)))
        for i in range(3)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-3)
    alone = float(lovasz_hinge_loss(t[1:2], p[1:2])[0])
    assert alone == pytest.approx(got[1], rel=1e-5)


def test_get_loss_knows_lovasz_and_names_the_choices_for_an_unknown_loss():
    assert get_loss("lovasz") is lovasz_hinge_loss
    with pytest.raises(ValueError, match="lovasz"):
        get_loss("hinge")


def test_lovasz_hinge_charges_an_empty_truth_its_most_confident_false_positive():
    t = np.zeros((1, 1, 3, 1), np.float32)
    p = _sigmoid([[[[2.0], [-1.0], [0.5]]]]).astype(np.float32)  # hinge errors 1 + logit: 3, 0, 1.5
    assert float(lovasz_hinge_loss(t, p)[0]) == pytest.approx(3.0, rel=1e-4)

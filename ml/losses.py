"""Losses and metrics for binary tumour masks.

All metrics are computed **per image and then averaged**, not over the batch's pooled pixels, so a
small pituitary tumour weighs as much as a large glioma.

Empty masks: the smoothing term ``SMOOTH`` makes an image whose ground truth and prediction are both
empty score Dice = IoU = 1, and an image with exactly one of them empty score ~0. (Every slice of the
Figshare set has a tumour, so this matters only for user data and synthetic tests.)
"""

from __future__ import annotations

import math

import keras
from keras import ops

SMOOTH = 1e-6
SOFT_SMOOTH = 1.0


def _flatten(y_true, y_pred):
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    batch = ops.shape(y_pred)[0]
    return ops.reshape(y_true, (batch, -1)), ops.reshape(y_pred, (batch, -1))


def per_image_dice(y_true, y_pred, threshold: float = 0.5):
    """Hard Dice per image, shape ``(B,)``: ``2|P∩G| / (|P| + |G|)`` with P = y_pred > threshold."""
    t, p = _flatten(y_true, y_pred)
    p = ops.cast(p > threshold, "float32")
    inter = ops.sum(t * p, axis=1)
    return (2.0 * inter + SMOOTH) / (ops.sum(t, axis=1) + ops.sum(p, axis=1) + SMOOTH)


def per_image_iou(y_true, y_pred, threshold: float = 0.5):
    """Hard IoU (Jaccard) per image, shape ``(B,)``."""
    t, p = _flatten(y_true, y_pred)
    p = ops.cast(p > threshold, "float32")
    inter = ops.sum(t * p, axis=1)
    union = ops.sum(t, axis=1) + ops.sum(p, axis=1) - inter
    return (inter + SMOOTH) / (union + SMOOTH)


def soft_dice_loss(y_true, y_pred):
    """``1 - soft Dice`` per image on probabilities, shape ``(B,)``; smoothing 1 keeps gradients sane."""
    t, p = _flatten(y_true, y_pred)
    inter = ops.sum(t * p, axis=1)
    dice = (2.0 * inter + SOFT_SMOOTH) / (ops.sum(t, axis=1) + ops.sum(p, axis=1) + SOFT_SMOOTH)
    return 1.0 - dice


def bce_dice_loss(y_true, y_pred):
    """Binary cross-entropy + soft Dice loss with equal weights, per image, shape ``(B,)``."""
    t, p = _flatten(y_true, y_pred)
    p = ops.clip(p, 1e-7, 1.0 - 1e-7)
    bce = -ops.mean(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p), axis=1)
    return bce + soft_dice_loss(y_true, y_pred)


def focal_loss(y_true, y_pred, gamma: float = 2.0, alpha: float = 0.25):
    """Binary focal loss (Lin et al. 2017) per image, shape ``(B,)``; an optional alternative."""
    t, p = _flatten(y_true, y_pred)
    p = ops.clip(p, 1e-7, 1.0 - 1e-7)
    pt = t * p + (1 - t) * (1 - p)
    w = t * alpha + (1 - t) * (1 - alpha)
    return ops.mean(-w * (1 - pt) ** gamma * ops.log(pt), axis=1)


def _logits(p):
    """Logits of sigmoid probabilities (the models end in a float32 sigmoid)."""
    p = ops.clip(p, 1e-6, 1.0 - 1e-6)
    return ops.log(p) - ops.log(1.0 - p)


def lovasz_hinge_loss(y_true, y_pred):
    """Lovász hinge per image, shape ``(B,)`` (Berman, Rannen Triki & Blaschko, CVPR 2018).

    A convex surrogate of ``1 - IoU`` of the foreground: the hinge errors ``1 - logit·sign`` are sorted
    in decreasing order and weighted by the gradient of the Lovász extension of the Jaccard loss, which
    depends only on the sorted ground truth. Computed per image, so, like the metrics, a small tumour
    weighs as much as a large one. An image with an empty ground truth is charged its largest hinge
    error (its most confident false positive): every Jaccard weight but the first is then 0. Best used
    to fine-tune a model trained with ``bce_dice``, at a lower learning rate, as the paper does.
    """
    t, p = _flatten(y_true, y_pred)
    signs = 2.0 * t - 1.0
    errors = 1.0 - _logits(p) * signs
    order = ops.flip(ops.argsort(errors, axis=1), axis=1)  # decreasing errors
    errors_sorted = ops.take_along_axis(errors, order, axis=1)
    gt_sorted = ops.stop_gradient(ops.take_along_axis(t, order, axis=1))
    gts = ops.sum(gt_sorted, axis=1, keepdims=True)
    intersection = gts - ops.cumsum(gt_sorted, axis=1)
    union = gts + ops.cumsum(1.0 - gt_sorted, axis=1)
    jaccard = 1.0 - intersection / union
    grad = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
    return ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(grad), axis=1)


def dice(y_true, y_pred):
    """Keras metric: per-image hard Dice at 0.5 (Keras averages the ``(B,)`` values)."""
    return per_image_dice(y_true, y_pred)


def iou(y_true, y_pred):
    """Keras metric: per-image hard IoU at 0.5."""
    return per_image_iou(y_true, y_pred)


def psnr(y_true, y_pred):
    """Keras metric: per-image peak signal-to-noise ratio in dB of a restored slice in [0, 1] (higher is
    better; self-supervised pretraining, ``ml.pretrain``)."""
    y_true, y_pred = _flatten(y_true, y_pred)
    mse = ops.mean(ops.square(y_true - y_pred), axis=1)
    return -10.0 * ops.log(ops.maximum(mse, 1e-10)) / math.log(10.0)


LOSSES = {"bce_dice": bce_dice_loss, "focal": focal_loss, "dice": soft_dice_loss, "lovasz": lovasz_hinge_loss}


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; choose one of: {', '.join(LOSSES)}.")
    return LOSSES[name]


keras.saving.register_keras_serializable("tumorsite")(bce_dice_loss)
keras.saving.register_keras_serializable("tumorsite")(lovasz_hinge_loss)
keras.saving.register_keras_serializable("tumorsite")(dice)
keras.saving.register_keras_serializable("tumorsite")(iou)
keras.saving.register_keras_serializable("tumorsite")(psnr)

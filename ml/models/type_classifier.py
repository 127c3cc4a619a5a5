"""Tumour-type classifier: a segmenter's encoder with a global-pooling head (three classes).

The encoder is ``ml.encoders.build_encoder``, the same one the segmenters use, with the same layer
names, so a trained U-Net's encoder seeds it (``ml.train.transfer_weights``): the segmentation training
has already taught it where the tumour is. The head pools the bottleneck globally (mean and max, as in
the "concat pooling" of fast.ai and of Lin et al.'s "Network in Network", ICLR 2014, which introduced
global average pooling for classification), then dropout, one hidden layer and a softmax.

Cheng et al. 2015 ("Enhanced performance of brain tumor classification via tumor region augmentation
and partition", PLoS ONE) classified the same Figshare slices with hand-made features of the tumour
region (91.28 % accuracy); this is the learned counterpart, run on the whole slice.

With ``tumour_input`` the classifier also looks at the tumour region, as Cheng et al.'s features did: a
second input holds the tumour's outline as weights (``tumour_weights``: the mask scaled so that its mean
over the slice is 1, or all zeros when there is no outline), and the head pools the bottleneck a third
time, weighted by that region (a mask-weighted average, like region-of-interest pooling). The bottleneck's
cells see well past their own area, so the region pooled is the tumour with its surroundings, the
"augmented tumour region" Cheng et al. found to type better than the tumour alone. The encoder is the
same, so a U-Net still seeds it.

Input ``(B, H, W, 1)`` grayscale in [0, 1] (and with ``tumour_input`` a second ``(B, H, W, 1)``, the tumour
weights); output ``(B, 3)`` probabilities (float32) in the order of ``ml.data.TUMOUR_TYPES``. H and W must
be a multiple of the encoder's divisor (16 for plain depth 4).
"""

from __future__ import annotations

import keras
from keras import layers

from ml.blocks import check_input_size
from ml.data import TUMOUR_TYPES
from ml.encoders import build_encoder, encoder_divisor


def build_type_classifier(
    *,
    encoder: str = "plain",
    input_size: int = 128,
    base_filters: int = 12,
    depth: int = 4,
    encoder_weights=None,
    dropout: float = 0.3,
    hidden: int = 64,
    tumour_input: bool = False,
    name: str = "type_classifier",
) -> keras.Model:
    """Build the classifier.

    Args:
        encoder: "plain", "vgg16" or "efficientnetb0" (see ``ml.encoders``).
        input_size: H = W of the square input; a multiple of ``encoder_divisor(encoder, depth)``.
        base_filters: filters of the plain encoder's first stage (12 matches the shipped U-Net).
        depth: downsamplings of the plain encoder.
        encoder_weights: None, "imagenet" or a weights file path (backbones only).
        dropout: dropout on the pooled features, in [0, 1).
        hidden: units of the hidden dense layer.
        tumour_input: a second input, the tumour weights, and the bottleneck also pooled over them.
    """
    check_input_size(input_size, encoder_divisor(encoder, depth), "type classifier")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    if hidden < 1:
        raise ValueError(f"hidden must be at least 1, got {hidden}.")
    # === Functional Model ===
    inputs = keras.Input((input_size, input_size, 1), name="image")
    _, x = build_encoder(inputs, encoder, base_filters=base_filters, depth=depth, weights=encoder_weights)
    if not tumour_input:
        return keras.Model(inputs, type_head(x, dropout=dropout, hidden=hidden), name=name)
    tumour = keras.Input((input_size, input_size, 1), name="tumour")
    # Each bottleneck cell's share of the weights: their mean over the cells is 1, as over the pixels.
    cells = layers.AveragePooling2D(input_size // x.shape[1], name="type_tumour_cells")(tumour)
    region = layers.GlobalAveragePooling2D(name="type_region_pool")(
        layers.Multiply(name="type_region_weighted")([x, cells])
    )
    return keras.Model([inputs, tumour], type_head(x, region, dropout=dropout, hidden=hidden), name=name)


def type_head(bottleneck, region=None, *, dropout: float = 0.3, hidden: int = 64):
    """The tumour-type probabilities from a bottleneck: global mean and max pooling (and the tumour
    region's weighted mean, when given), dropout, one hidden layer and a softmax over ``TUMOUR_TYPES``
    (float32). The classifier's head, and a segmenter's second head when both are trained together
    (``ml.models.with_type_head``)."""
    pools = [
        layers.GlobalAveragePooling2D(name="type_avg_pool")(bottleneck),
        layers.GlobalMaxPooling2D(name="type_max_pool")(bottleneck),
    ]
    pooled = layers.Concatenate(name="type_pooled")(pools + ([] if region is None else [region]))
    x = layers.Dropout(dropout, name="type_dropout")(pooled)
    x = layers.Dense(hidden, activation="relu", name="type_hidden")(x)
    return layers.Dense(len(TUMOUR_TYPES), activation="softmax", dtype="float32", name="tumour_type")(x)

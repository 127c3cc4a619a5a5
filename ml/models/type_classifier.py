"""Tumour-type classifier: a segmenter's encoder with a global-pooling head (three classes).

The encoder is ``ml.encoders.build_encoder``, the same one the segmenters use, with the same layer
names, so a trained U-Net's encoder seeds it (``ml.train.transfer_weights``): the segmentation training
has already taught it where the tumour is. The head pools the bottleneck globally (mean and max, as in
the "concat pooling" of fast.ai and of Lin et al.'s "Network in Network", ICLR 2014, which introduced
global average pooling for classification), then dropout, one hidden layer and a softmax.

Cheng et al. 2015 ("Enhanced performance of brain tumor classification via tumor region augmentation
and partition", PLoS ONE) classified the same Figshare slices with hand-made features of the tumour
region (91.28 % accuracy); this is the learned counterpart, run on the whole slice.

Input ``(B, H, W, 1)`` grayscale in [0, 1]; output ``(B, 3)`` probabilities (float32) in the order of
``ml.data.TUMOUR_TYPES``. H and W must be a multiple of the encoder's divisor (16 for plain depth 4).
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
    """
    check_input_size(input_size, encoder_divisor(encoder, depth), "type classifier")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    if hidden < 1:
        raise ValueError(f"hidden must be at least 1, got {hidden}.")
    # === Functional Model ===
    inputs = keras.Input((input_size, input_size, 1), name="image")
    _, x = build_encoder(inputs, encoder, base_filters=base_filters, depth=depth, weights=encoder_weights)
    return keras.Model(inputs, type_head(x, dropout=dropout, hidden=hidden), name=name)


def type_head(bottleneck, *, dropout: float = 0.3, hidden: int = 64):
    """The tumour-type probabilities from a bottleneck: global mean and max pooling, dropout, one hidden
    layer and a softmax over ``TUMOUR_TYPES`` (float32). The classifier's head, and a segmenter's second
    head when both are trained together (``ml.models.with_type_head``)."""
    pooled = layers.Concatenate(name="type_pooled")(
        [
            layers.GlobalAveragePooling2D(name="type_avg_pool")(bottleneck),
            layers.GlobalMaxPooling2D(name="type_max_pool")(bottleneck),
        ]
    )
    x = layers.Dropout(dropout, name="type_dropout")(pooled)
    x = layers.Dense(hidden, activation="relu", name="type_hidden")(x)
    return layers.Dense(len(TUMOUR_TYPES), activation="softmax", dtype="float32", name="tumour_type")(x)

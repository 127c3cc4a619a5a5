"""Encoders for the three decoders: a plain convolutional encoder, or a transfer-learning backbone
from ``keras.applications`` (VGG16, EfficientNetB0).

Every encoder returns ``(skips, bottleneck)``: ``skips[i]`` is the feature map at stride ``2**i``
(``skips[0]`` is full resolution) and the bottleneck sits at stride ``2**len(skips)``. Backbone skips
come from a table of layer names, as in segmentation_models' backbone factory; the backbones have no
stride-1 feature, so a small convolution stem on the input supplies it.

Grayscale input is adapted for the 3-channel backbones by repeating the channel and applying the
backbone's own input preprocessing, so ImageNet weights see what they were trained on.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from ml.blocks import bottleneck_attention, conv_block

ENCODERS = ("plain", "vgg16", "efficientnetb0")

# Skip layers per backbone, ordered by stride 2, 4, 8, 16; then the bottleneck layer.
BACKBONE_LAYERS = {
    "vgg16": {
        "skips": ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"),
        "strides": (1, 2, 4, 8),
        "bottleneck": "block5_conv3",
    },
    "efficientnetb0": {
        "skips": (
            "block2a_expand_activation",
            "block3a_expand_activation",
            "block4a_expand_activation",
            "block6a_expand_activation",
        ),
        "strides": (2, 4, 8, 16),
        "bottleneck": "top_activation",
    },
}

# ImageNet "caffe" preprocessing for VGG16 on RGB input scaled to 0..255 (BGR means, reordered).
_VGG_MEAN_RGB = (123.68, 116.779, 103.939)


def encoder_divisor(encoder: str, depth: int = 4) -> int:
    """The factor the input height and width must be a multiple of."""
    check_encoder(encoder)
    if encoder == "plain":
        return 2**depth
    return 32 if encoder == "efficientnetb0" else 16


def check_encoder(encoder: str) -> None:
    if encoder not in ENCODERS:
        raise ValueError(f"Unknown encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}.")


def normalise_encoder_weights(weights) -> str | None:
    """``None``/"none" -> None, "imagenet" -> "imagenet", anything else must be an existing file."""
    if weights is None or str(weights).lower() in {"none", "random", ""}:
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(
            f"Encoder weights file {str(path)!r} does not exist. Pass 'none', 'imagenet' or the path "
            "of a Keras applications weights file (include_top=False)."
        )
    return str(path)


def build_encoder(
    inputs,
    encoder: str,
    *,
    base_filters: int = 16,
    depth: int = 4,
    weights=None,
    dropout: float = 0.0,
    attention_blocks: int = 0,
):
    """Build an encoder on ``inputs`` (``(B, H, W, 1)``, intensities in [0, 1]).

    ``attention_blocks`` transformer blocks (``ml.blocks.bottleneck_attention``) follow the bottleneck.
    Returns ``(skips, bottleneck)`` as described in the module docstring.
    """
    check_encoder(encoder)
    if encoder == "plain":
        skips, bottleneck = _plain_encoder(inputs, base_filters, depth, dropout)
    else:
        skips, bottleneck = _backbone_encoder(
            inputs, encoder, base_filters, normalise_encoder_weights(weights)
        )
    return skips, bottleneck_attention(bottleneck, attention_blocks)


def _plain_encoder(x, base_filters: int, depth: int, dropout: float):
    if base_filters < 1 or depth < 1:
        raise ValueError(f"base_filters and depth must be >= 1; got {base_filters} and {depth}.")
    skips = []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, f"encoder_stage{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"encoder_pool{level}")(x)
    bottleneck = conv_block(x, base_filters * 2**depth, "bottleneck", dropout=dropout)
    return skips, bottleneck


def _backbone_encoder(inputs, encoder: str, base_filters: int, weights: str | None):
    size = inputs.shape[1]
    rgb = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    rgb = layers.Rescaling(255.0, name="to_0_255")(rgb)
    if encoder == "vgg16":
        rgb = layers.Normalization(mean=_VGG_MEAN_RGB, variance=(1.0, 1.0, 1.0), name="vgg_preprocess")(rgb)
        factory = keras.applications.VGG16
    else:
        factory = keras.applications.EfficientNetB0  # rescales 0..255 internally
    try:
        backbone = factory(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as exc:  # urllib/HTTP errors differ between Keras versions
        if weights == "imagenet":
            raise RuntimeError(
                f"Could not load ImageNet weights for {encoder} ({exc}). This machine may have no "
                "network access: download the include_top=False weights file elsewhere and pass its "
                "path with --encoder-weights PATH, or train from random init with --encoder-weights none."
            ) from exc
        raise
    table = BACKBONE_LAYERS[encoder]
    names = [*table["skips"], table["bottleneck"]]
    extractor = keras.Model(
        backbone.input, [backbone.get_layer(n).output for n in names], name=f"{encoder}_backbone"
    )
    *backbone_skips, bottleneck = extractor(rgb)
    skips = [conv_block(inputs, base_filters, "encoder_stem")] if table["strides"][0] != 1 else []
    skips += backbone_skips
    return skips, bottleneck

"""U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, arXiv:1505.04597).

Input ``(B, H, W, 1)`` grayscale in [0, 1]; output ``(B, H, W, 1)`` tumour probability (float32).
H and W must be a multiple of the encoder's divisor (16 for plain depth 4 and VGG16, 32 for
EfficientNetB0).
"""

from __future__ import annotations

import keras
from keras import layers

from ml.blocks import check_input_size, conv_block, segmentation_head, upsample
from ml.encoders import build_encoder, encoder_divisor


def build_unet(
    *,
    encoder: str = "plain",
    input_size: int = 128,
    base_filters: int = 16,
    depth: int = 4,
    encoder_weights=None,
    dropout: float = 0.0,
    attention_blocks: int = 0,
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net.

    Args:
        encoder: "plain", "vgg16" or "efficientnetb0" (see ``ml.encoders``).
        input_size: H = W of the square input; a multiple of ``encoder_divisor(encoder, depth)``.
        base_filters: filters of the full-resolution stage; stage ``i`` has ``base_filters * 2**i``.
        depth: number of downsamplings of the plain encoder (backbones fix their own).
        encoder_weights: None, "imagenet" or a weights file path (backbones only).
        dropout: spatial dropout after the bottleneck.
        attention_blocks: transformer blocks after the bottleneck (``ml.blocks.bottleneck_attention``;
            default 0, none).
    """
    check_input_size(input_size, encoder_divisor(encoder, depth), "U-Net")
    # === Functional Model ===
    inputs = keras.Input((input_size, input_size, 1), name="image")
    skips, x = build_encoder(
        inputs,
        encoder,
        base_filters=base_filters,
        depth=depth,
        weights=encoder_weights,
        dropout=dropout,
        attention_blocks=attention_blocks,
    )
    for level in reversed(range(len(skips))):
        filters = base_filters * 2**level
        x = upsample(x, filters, f"decoder_stage{level}")
        x = layers.Concatenate(name=f"decoder_stage{level}_concat")([x, skips[level]])
        x = conv_block(x, filters, f"decoder_stage{level}")
    return keras.Model(inputs, segmentation_head(x), name=name)

"""U-Net++ (Zhou, Rahman Siddiquee, Tajbakhsh & Liang, "UNet++: A Nested U-Net Architecture for
Medical Image Segmentation", DLMIA 2018, arXiv:1807.10165).

Nested dense skip pathways: node ``X[i][j]`` (level ``i``, column ``j``) convolves the concatenation
of ``X[i][0..j-1]`` with the upsampled ``X[i+1][j-1]``. The output comes from ``X[0][depth]``; with
deep supervision every ``X[0][j]`` gets a head and the model returns a list of ``depth`` masks
(average them at inference; ``ml.inference`` does).

Input ``(B, H, W, 1)`` in [0, 1]; output ``(B, H, W, 1)`` (or a list of them). H, W: multiple of the
encoder's divisor.
"""

from __future__ import annotations

import keras
from keras import layers

from ml.blocks import check_input_size, conv_block, segmentation_head, upsample
from ml.encoders import build_encoder, encoder_divisor


def build_unet_plus_plus(
    *,
    encoder: str = "plain",
    input_size: int = 128,
    base_filters: int = 16,
    depth: int = 4,
    encoder_weights=None,
    dropout: float = 0.0,
    attention_blocks: int = 0,
    deep_supervision: bool = False,
    name: str = "unet_plus_plus",
) -> keras.Model:
    """Build a U-Net++. Arguments as ``build_unet``, plus ``deep_supervision``."""
    check_input_size(input_size, encoder_divisor(encoder, depth), "U-Net++")
    # === Functional Model ===
    inputs = keras.Input((input_size, input_size, 1), name="image")
    skips, bottleneck = build_encoder(
        inputs,
        encoder,
        base_filters=base_filters,
        depth=depth,
        weights=encoder_weights,
        dropout=dropout,
        attention_blocks=attention_blocks,
    )
    levels = len(skips)
    nodes = {(i, 0): f for i, f in enumerate(skips)}
    nodes[(levels, 0)] = bottleneck
    for j in range(1, levels + 1):
        for i in range(0, levels - j + 1):
            filters = base_filters * 2**i
            up = upsample(nodes[(i + 1, j - 1)], filters, f"nested_x{i}{j}")
            parts = [nodes[(i, k)] for k in range(j)] + [up]
            x = layers.Concatenate(name=f"nested_x{i}{j}_concat")(parts)
            nodes[(i, j)] = conv_block(x, filters, f"nested_x{i}{j}")
    if deep_supervision:
        outputs = [segmentation_head(nodes[(0, j)], name=f"mask_x0{j}") for j in range(1, levels + 1)]
    else:
        outputs = segmentation_head(nodes[(0, levels)])
    return keras.Model(inputs, outputs, name=name)

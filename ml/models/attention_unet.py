"""Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas",
MIDL 2018, arXiv:1804.03999).

A U-Net whose skip connections pass through additive attention gates: the coarser decoder feature
``g`` gates the skip ``x`` with ``alpha = sigmoid(psi(relu(W_x x + W_g g)))`` before concatenation.

Input ``(B, H, W, 1)`` in [0, 1]; output ``(B, H, W, 1)``. H, W: multiple of the encoder's divisor.
"""

from __future__ import annotations

import keras
from keras import layers

from ml.blocks import check_input_size, conv_block, segmentation_head, upsample
from ml.encoders import build_encoder, encoder_divisor


def attention_gate(x, g, inter_filters: int, name: str):
    """Additive attention gate. ``x``: skip at stride s; ``g``: gating signal at stride 2s."""
    # === Layers ===
    theta_x = layers.Conv2D(inter_filters, 2, strides=2, padding="same", name=f"{name}_theta_x")(x)
    phi_g = layers.Conv2D(inter_filters, 1, padding="same", name=f"{name}_phi_g")(g)
    f = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta_x, phi_g]))
    psi = layers.Conv2D(1, 1, padding="same", name=f"{name}_psi")(f)
    alpha = layers.Activation("sigmoid", name=f"{name}_alpha")(psi)
    alpha = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_alpha_up")(alpha)
    return layers.Multiply(name=f"{name}_gated")([x, alpha])


def build_attention_unet(
    *,
    encoder: str = "plain",
    input_size: int = 128,
    base_filters: int = 16,
    depth: int = 4,
    encoder_weights=None,
    dropout: float = 0.0,
    attention_blocks: int = 0,
    name: str = "attention_unet",
) -> keras.Model:
    """Build an Attention U-Net. Arguments as ``build_unet``."""
    check_input_size(input_size, encoder_divisor(encoder, depth), "Attention U-Net")
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
        gated = attention_gate(skips[level], x, max(filters // 2, 1), f"decoder_stage{level}_attention")
        x = upsample(x, filters, f"decoder_stage{level}")
        x = layers.Concatenate(name=f"decoder_stage{level}_concat")([x, gated])
        x = conv_block(x, filters, f"decoder_stage{level}")
    return keras.Model(inputs, segmentation_head(x), name=name)

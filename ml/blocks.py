"""Building blocks shared by the three decoders.

Layer names are stable and derived from a caller-given prefix so that saved ``.keras`` files,
checkpoints and the embedding extractor can address layers by name.
"""

from __future__ import annotations

from keras import layers


def conv_block(x, filters: int, name: str, *, dropout: float = 0.0):
    """Two 3x3 convolutions, each followed by batch norm and ReLU (Ronneberger et al. 2015)."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    if dropout:
        x = layers.SpatialDropout2D(dropout, name=f"{name}_dropout")(x)
    return x


def upsample(x, filters: int, name: str):
    """2x upsampling with a learned transposed convolution."""
    return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_upconv")(x)


def segmentation_head(x, name: str = "mask"):
    """1x1 convolution to one sigmoid channel, kept in float32 under mixed precision."""
    return layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name=name)(x)


def check_input_size(input_size: int, divisor: int, who: str) -> None:
    if input_size <= 0 or input_size % divisor:
        raise ValueError(
            f"{who}: input_size must be a positive multiple of {divisor} (the encoder downsamples "
            f"{divisor}x); got {input_size}. Try {max(divisor, round(input_size / divisor) * divisor)}."
        )


def bottleneck_attention(
    x, blocks: int, name: str = "bottleneck_attention", *, heads: int = 4, mlp_ratio: int = 2
):
    """``blocks`` transformer blocks over the bottleneck's positions: global context for the decoder.

    At 256 px and depth 5 the bottleneck is 8x8 positions of ``C`` channels. Convolutions relate each
    position to its neighbours; self-attention (Vaswani et al., NeurIPS 2017) relates every position to
    every other, as TransUNet does at its bottleneck (Chen et al., arXiv:2102.04306, 2021), so the
    decoder can weigh a bright region against the rest of the slice. Each block, pre-norm:

    1. position: ``x + DW3x3(x)``, a depthwise 3x3 convolution (the conditional positional encoding
       of Chu et al., "Conditional Positional Encodings for Vision Transformers", ICLR 2023);
    2. ``t + MHSA(LN(t))`` over the ``H*W`` positions, ``heads`` heads of ``C / heads`` channels;
    3. ``t + MLP(LN(t))``, GELU, ``mlp_ratio * C`` hidden units.

    Every residual branch ends in a per-channel scale initialised at zero (ReZero, Bachlechner et al.,
    arXiv:2003.04887, 2020; LayerScale, Touvron et al., ICCV 2021), and the positional convolution
    starts at zero too, so a new block is the identity: a model warm-started from one without
    attention computes exactly what its source did until training moves the scales. Only standard
    Keras layers are used, so a saved ``.keras`` file reloads without custom objects.

    Args:
        x: ``(B, H, W, C)`` with static H, W and C; C must be a multiple of ``heads``.
        blocks: how many blocks; 0 returns ``x`` unchanged.
    Returns ``(B, H, W, C)``.
    """
    if blocks < 0:
        raise ValueError(f"bottleneck attention blocks must be >= 0; got {blocks}.")
    if not blocks:
        return x
    _, h, w, c = x.shape
    if c % heads:
        raise ValueError(
            f"bottleneck attention: {c} channels do not split into {heads} heads; "
            f"use base filters whose bottleneck width is a multiple of {heads}."
        )
    for b in range(blocks):
        n = f"{name}{b}"
        # === Layers ===
        # No bias: TensorFlow's oneDNN remapper fails to fuse depthwise conv + bias + add on CPU and then
        # skips graph optimisation for the whole function, with "empty op name" warnings.
        pos = layers.DepthwiseConv2D(
            3, padding="same", use_bias=False, depthwise_initializer="zeros", name=f"{n}_position"
        )(x)
        x = layers.Add(name=f"{n}_position_add")([x, pos])
        t = layers.Reshape((h * w, c), name=f"{n}_tokens")(x)
        a = layers.LayerNormalization(epsilon=1e-6, name=f"{n}_attention_norm")(t)
        a = layers.MultiHeadAttention(heads, c // heads, name=f"{n}_attention")(a, a)
        a = _zero_scale(a, f"{n}_attention_scale")
        t = layers.Add(name=f"{n}_attention_add")([t, a])
        m = layers.LayerNormalization(epsilon=1e-6, name=f"{n}_mlp_norm")(t)
        m = layers.Dense(mlp_ratio * c, activation="gelu", name=f"{n}_mlp_dense1")(m)
        m = layers.Dense(c, name=f"{n}_mlp_dense2")(m)
        m = _zero_scale(m, f"{n}_mlp_scale")
        t = layers.Add(name=f"{n}_mlp_add")([t, m])
        x = layers.Reshape((h, w, c), name=f"{n}_grid")(t)
    return x


def _zero_scale(t, name: str):
    """A learned per-channel scale of ``(B, N, C)`` tokens, starting at 0 (a 1-wide depthwise conv)."""
    return layers.DepthwiseConv1D(1, use_bias=False, depthwise_initializer="zeros", name=name)(t)

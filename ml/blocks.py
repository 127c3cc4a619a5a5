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

"""The segmenter zoo: one builder per architecture, chosen by name.

``build_model(architecture, encoder, ...)`` is the single entry point; ``ModelSpec`` holds every
builder argument and round-trips through ``get_config()``/``from_config()`` so a model can be
rebuilt from its metadata JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import keras

from ml.encoders import ENCODERS, check_encoder
from ml.models.attention_unet import build_attention_unet
from ml.models.type_classifier import type_head
from ml.models.unet import build_unet
from ml.models.unet_plus_plus import build_unet_plus_plus

BUILDERS = {
    "unet": build_unet,
    "unet_plus_plus": build_unet_plus_plus,
    "attention_unet": build_attention_unet,
}
ARCHITECTURES = tuple(BUILDERS)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a segmenter's graph."""

    # === Config ===
    architecture: str
    encoder: str = "plain"
    input_size: int = 128
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.0
    deep_supervision: bool = False
    attention_blocks: int = 0  # transformer blocks after the bottleneck; absent in older bundles

    def __post_init__(self):
        if self.architecture not in BUILDERS:
            raise ValueError(
                f"Unknown architecture {self.architecture!r}; choose one of: {', '.join(ARCHITECTURES)}."
            )
        check_encoder(self.encoder)
        if self.attention_blocks < 0:
            raise ValueError(f"attention_blocks must be >= 0; got {self.attention_blocks}.")
        if self.deep_supervision and self.architecture != "unet_plus_plus":
            raise ValueError("deep_supervision is only defined for unet_plus_plus.")

    def get_config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in known})

    def build(self, encoder_weights=None) -> keras.Model:
        kwargs = {
            "encoder": self.encoder,
            "input_size": self.input_size,
            "base_filters": self.base_filters,
            "depth": self.depth,
            "encoder_weights": encoder_weights,
            "dropout": self.dropout,
            "attention_blocks": self.attention_blocks,
        }
        if self.architecture == "unet_plus_plus":
            kwargs["deep_supervision"] = self.deep_supervision
        return BUILDERS[self.architecture](**kwargs)


def build_model(architecture: str, encoder: str = "plain", *, encoder_weights=None, **spec) -> keras.Model:
    """Build a segmenter by name. See ``ModelSpec`` for the arguments and ``ml.encoders`` for encoders."""
    return ModelSpec(architecture=architecture, encoder=encoder, **spec).build(encoder_weights)


# The plain encoder's bottleneck, where a joint model's type head reads (``Segmenter.embed`` reads there too).
BOTTLENECK = "bottleneck_relu2"


def with_type_head(segmenter: keras.Model) -> keras.Model:
    """The segmenter with a second output, the tumour type from its bottleneck (``type_head``), to learn
    segmentation and type together through one encoder (Mehta et al., "Y-Net: Joint Segmentation and
    Classification for Diagnosis of Breast Biopsy Images", MICCAI 2018). Outputs ``{"mask", "tumour_type"}``;
    ``segmentation_only`` takes the head off again. Plain encoders only."""
    names = {layer.name for layer in segmenter.layers}
    if BOTTLENECK not in names or "mask" not in names:
        raise ValueError("a type head reads the plain encoder's bottleneck: train it with --encoder plain.")
    outputs = {"mask": segmenter.output, "tumour_type": type_head(segmenter.get_layer(BOTTLENECK).output)}
    return keras.Model(segmenter.input, outputs, name=segmenter.name)


def segmentation_only(model: keras.Model) -> keras.Model:
    """A joint model's segmenter (its mask output, sharing its weights); any other model as it is."""
    if not isinstance(model.output, dict):
        return model
    return keras.Model(model.input, model.output["mask"], name=model.name)


__all__ = ["ARCHITECTURES", "ENCODERS", "ModelSpec", "build_model", "segmentation_only", "with_type_head"]

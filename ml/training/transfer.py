"""Warm starts: copy a trained model's weights into another model, layer by layer."""

from __future__ import annotations

import re

_HEAD = re.compile(r"mask_x0\d+")  # a deep-supervision head of a U-Net++ (Zhou et al. 2018)


def _head_twin(name: str, by_name: dict):
    """The source layer that seeds a segmentation head of another kind: each deep-supervision head
    (``mask_x0J``) of a U-Net++ starts as a single-head model's ``mask``, and a single head as the last
    deep-supervision head. All sit on level-0 nodes of the same width, so the shapes agree."""
    if _HEAD.fullmatch(name) and "mask" in by_name:
        return by_name["mask"]
    if name == "mask":
        heads = sorted((n for n in by_name if _HEAD.fullmatch(n)), key=lambda n: int(n[6:]))
        return by_name[heads[-1]] if heads else None
    return None


def transfer_weights(source, target) -> list[str]:
    """Copy weights layer by layer where the name and every weight shape agree; returns the names.

    A trained U-Net seeds an Attention U-Net this way: encoder, bottleneck and decoder blocks share
    names and shapes, and only the attention gates start from scratch. Segmentation heads also pair
    across deep supervision (``_head_twin``): a random head on trained features predicts with
    confidence and wrongly, and its gradients wreck the copied layers (a deep-supervision U-Net++
    warm-started with random heads fell to validation Dice 0.03, docs/model-history.md).
    """
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in target.layers:
        twin = by_name.get(layer.name) or _head_twin(layer.name, by_name)
        if twin is None or not layer.weights:
            continue
        src, dst = twin.get_weights(), layer.get_weights()
        if len(src) == len(dst) and all(a.shape == b.shape for a, b in zip(src, dst, strict=True)):
            layer.set_weights(src)
            copied.append(layer.name)
    return copied

"""Warm starts across deep supervision: segmentation heads pair up (``ml.train.transfer_weights``)."""

import numpy as np
import pytest

from ml.models import build_model
from ml.train import transfer_weights

pytestmark = pytest.mark.slow


def _batch(size=32, n=2):
    return np.random.default_rng(0).random((n, size, size, 1), dtype=np.float32)


def test_a_deep_supervision_unet_plus_plus_starts_from_a_single_head_models_output():
    source = build_model("unet_plus_plus", input_size=32, base_filters=4, depth=3)
    head = source.get_layer("mask")
    head.set_weights([w + 0.3 for w in head.get_weights()])  # a head unlike a fresh one
    target = build_model("unet_plus_plus", input_size=32, base_filters=4, depth=3, deep_supervision=True)

    copied = transfer_weights(source, target)

    assert {"mask_x01", "mask_x02", "mask_x03"} <= set(copied)
    assert len(copied) == sum(1 for layer in target.layers if layer.weights)
    for name in ("mask_x01", "mask_x02", "mask_x03"):
        for a, b in zip(target.get_layer(name).get_weights(), head.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    x = _batch()
    last_head = target(x, training=False)[-1]
    np.testing.assert_allclose(np.asarray(last_head), np.asarray(source(x, training=False)), atol=1e-6)


def test_a_single_head_model_takes_the_last_deep_supervision_head():
    source = build_model("unet_plus_plus", input_size=32, base_filters=4, depth=3, deep_supervision=True)
    target = build_model("unet_plus_plus", input_size=32, base_filters=4, depth=3)

    assert "mask" in transfer_weights(source, target)
    x = _batch()
    np.testing.assert_allclose(
        np.asarray(target(x, training=False)), np.asarray(source(x, training=False)[-1]), atol=1e-6
    )

"""Warm starts: a trained U-Net seeds an Attention U-Net layer by layer."""

import numpy as np

from ml.models import build_model
from ml.train import transfer_weights


def test_unet_weights_seed_every_attention_unet_layer_but_the_gates():
    unet = build_model("unet", input_size=32, base_filters=4, depth=3)
    att = build_model("attention_unet", input_size=32, base_filters=4, depth=3)
    copied = transfer_weights(unet, att)
    assert "encoder_stage0_conv1" in copied and "decoder_stage0_conv2" in copied and "mask" in copied
    assert not [name for name in copied if "attention" in name]
    gates = [layer.name for layer in att.layers if "attention" in layer.name and layer.weights]
    assert gates  # the gates exist and were left to train from scratch
    np.testing.assert_array_equal(
        att.get_layer("bottleneck_conv1").get_weights()[0],
        unet.get_layer("bottleneck_conv1").get_weights()[0],
    )


def test_layers_of_another_shape_are_left_alone():
    small = build_model("unet", input_size=32, base_filters=4, depth=3)
    wide = build_model("unet", input_size=32, base_filters=8, depth=3)
    before = wide.get_layer("encoder_stage0_conv1").get_weights()[0].copy()
    assert transfer_weights(small, wide) == []
    np.testing.assert_array_equal(wide.get_layer("encoder_stage0_conv1").get_weights()[0], before)

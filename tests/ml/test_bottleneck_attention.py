"""Transformer blocks after the bottleneck (``ml.blocks.bottleneck_attention``, ``--attention-blocks``)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ml import losses
from ml.blocks import bottleneck_attention
from ml.models import ModelSpec, build_model
from ml.train import TrainConfig, transfer_weights

# (architecture, encoder, input size, base filters) -> output shape; one block after the bottleneck
TABLE = [
    ("unet", "plain", 32, 4, (None, 32, 32, 1)),
    ("unet_plus_plus", "plain", 32, 4, (None, 32, 32, 1)),
    ("attention_unet", "plain", 32, 4, (None, 32, 32, 1)),
    ("unet", "vgg16", 32, 4, (None, 32, 32, 1)),
]


def _batch(size, n=2, seed=0):
    x = np.random.default_rng(seed).random((n, size, size, 1), dtype=np.float32)
    return x, (x > 0.7).astype("float32")


def _scales(model):
    return {layer.name: layer.get_weights()[0] for layer in model.layers if layer.name.endswith("_scale")}


@pytest.mark.slow
@pytest.mark.parametrize("architecture,encoder,size,base,expected", TABLE)
def test_it_builds_learns_and_round_trips_without_custom_objects(
    architecture, encoder, size, base, expected, tmp_path
):

    model = build_model(architecture, encoder, input_size=size, base_filters=base, attention_blocks=1)
    assert model.output_shape == expected
    names = {layer.name for layer in model.layers}
    assert {"bottleneck_attention0_attention", "bottleneck_attention0_mlp_dense1"} <= names

    scales = _scales(model)
    assert set(scales) == {"bottleneck_attention0_attention_scale", "bottleneck_attention0_mlp_scale"}
    assert all(not w.any() for w in scales.values()), "the residual branches must start at zero"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.bce_dice_loss)
    x, y = _batch(size)
    assert np.isfinite(model.train_on_batch(x, y))
    assert all(w.any() for w in _scales(model).values()), "a step must move the zero-initialised scales"

    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, compile=False)  # no custom_objects: standard layers only
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("architecture", ["unet", "attention_unet", "unet_plus_plus"])
def test_new_blocks_start_as_the_identity_so_a_warm_start_keeps_its_source(architecture):
    source = build_model(architecture, input_size=32, base_filters=4, depth=3, dropout=0.1)
    target = build_model(
        architecture, input_size=32, base_filters=4, depth=3, dropout=0.1, attention_blocks=2
    )
    copied = transfer_weights(source, target)
    assert len(copied) == sum(1 for layer in source.layers if layer.weights)
    new = [layer.name for layer in target.layers if layer.weights and layer.name not in copied]
    assert new and all(name.startswith("bottleneck_attention") for name in new)
    x, _ = _batch(32, n=3, seed=1)
    # Not a tolerance: with every new branch scaled by exactly 0 the outputs are the same numbers.
    np.testing.assert_array_equal(
        np.asarray(target(x, training=False)), np.asarray(source(x, training=False))
    )


def test_attention_carries_information_across_the_whole_grid():
    """Once the scales are non-zero, changing one corner of the 8x8 grid changes the opposite corner,
    which the 3x3 positional convolution alone cannot do."""

    inputs = keras.Input((8, 8, 16))
    block = keras.Model(inputs, bottleneck_attention(inputs, 1))
    for layer in block.layers:
        if layer.name.endswith(("_scale", "_position")):
            layer.set_weights([np.full_like(w, 0.5) for w in layer.get_weights()])
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 8, 8, 16)).astype("float32")
    moved = x.copy()
    moved[0, 0, 0] += 3.0 * rng.normal(size=16).astype("float32")  # not a constant: layer norm removes those
    a, b = np.asarray(block(x)), np.asarray(block(moved))
    assert np.abs(a[0, 7, 7] - b[0, 7, 7]).max() > 1e-4

    # The positional convolution on its own reaches one position away, not seven.
    for layer in block.layers:
        if layer.name.endswith("_scale"):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    a, b = np.asarray(block(x)), np.asarray(block(moved))
    np.testing.assert_array_equal(a[0, 7, 7], b[0, 7, 7])
    assert np.abs(a[0, 1, 1] - b[0, 1, 1]).max() > 1e-4


def test_older_specs_have_no_blocks_and_new_ones_round_trip():
    old = {
        "architecture": "unet",
        "encoder": "plain",
        "input_size": 256,
        "base_filters": 12,
        "depth": 5,
        "dropout": 0.1,
        "deep_supervision": False,
    }  # a bundle's spec from before the option
    assert ModelSpec.from_config(old).attention_blocks == 0
    spec = ModelSpec(
        architecture="attention_unet", input_size=32, base_filters=4, depth=3, attention_blocks=2
    )
    assert ModelSpec.from_config(spec.get_config()) == spec


def test_bad_block_settings_are_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="attention_blocks must be >= 0"):
        ModelSpec(architecture="unet", attention_blocks=-1)
    with pytest.raises(ValueError, match="attention_blocks must be >= 0"):
        TrainConfig(architecture="unet", data_dir=str(tmp_path), attention_blocks=-1)
    # base 5, depth 1: a 10-channel bottleneck does not split into 4 heads
    with pytest.raises(ValueError, match="10 channels do not split into 4 heads"):
        build_model("unet", input_size=32, base_filters=5, depth=1, attention_blocks=1)


def test_the_block_keeps_tensorflows_graph_optimisation(capfd):
    """A biased depthwise convolution followed by an add made TensorFlow's oneDNN remapper give up on the
    whole traced function ("has an empty op name"), so the model ran without graph optimisation."""

    model = build_model("unet", input_size=32, base_filters=4, depth=3, attention_blocks=1)
    capfd.readouterr()
    out = tf.function(lambda x: model(x, training=False))(np.zeros((2, 32, 32, 1), np.float32))
    assert out.shape == (2, 32, 32, 1)
    err = capfd.readouterr().err
    assert "empty op name" not in err and "does not specify an operation" not in err

"""Every architecture x encoder builds, trains a step and round-trips through a .keras file."""

import keras
import numpy as np
import pytest

from ml import losses
from ml.models import ModelSpec, build_model

pytestmark = pytest.mark.slow

# (architecture, encoder, input size) -> output shape
SHAPE_TABLE = [
    ("unet", "plain", 32, (None, 32, 32, 1)),
    ("unet", "vgg16", 32, (None, 32, 32, 1)),
    ("unet", "efficientnetb0", 32, (None, 32, 32, 1)),
    ("unet_plus_plus", "plain", 32, (None, 32, 32, 1)),
    ("unet_plus_plus", "vgg16", 32, (None, 32, 32, 1)),
    ("unet_plus_plus", "efficientnetb0", 32, (None, 32, 32, 1)),
    ("attention_unet", "plain", 32, (None, 32, 32, 1)),
    ("attention_unet", "vgg16", 32, (None, 32, 32, 1)),
    ("attention_unet", "efficientnetb0", 32, (None, 32, 32, 1)),
    ("unet", "plain", 48, (None, 48, 48, 1)),
]


@pytest.mark.parametrize("architecture,encoder,size,expected", SHAPE_TABLE)
def test_it_builds_trains_a_step_and_round_trips(architecture, encoder, size, expected, tmp_path):

    model = build_model(architecture, encoder, input_size=size, base_filters=4)
    assert model.output_shape == expected

    rng = np.random.default_rng(0)
    x = rng.random((2, size, size, 1), dtype=np.float32)
    y = (x > 0.7).astype("float32")
    # Tracing EfficientNetB0's training graph takes about a minute on a 2-core CPU (three tests, twice in
    # CI), so its step runs eagerly: the same ops, gradients and update. Its graph-mode forward pass is
    # still checked below, by the reloaded model's predict; the other encoders train in graph mode.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=losses.bce_dice_loss,
        run_eagerly=encoder == "efficientnetb0",
    )
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)), (
        "a step changed no weight"
    )

    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, compile=False)  # as ml.inference loads bundles
    assert not reloaded.run_eagerly  # so its predict below runs as a traced graph
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_unet_plus_plus_deep_supervision_has_one_head_per_column():
    model = build_model("unet_plus_plus", input_size=32, base_filters=4, depth=3, deep_supervision=True)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 32, 32, 1)] * 3


def test_spec_round_trips_through_its_config():
    spec = ModelSpec(architecture="attention_unet", encoder="plain", input_size=64, base_filters=6, depth=3)
    again = ModelSpec.from_config(spec.get_config())
    assert again == spec
    assert again.build().count_params() == spec.build().count_params()


def test_attention_unet_has_a_gate_on_every_skip():
    model = build_model("attention_unet", input_size=32, base_filters=4)
    gates = [layer.name for layer in model.layers if layer.name.endswith("_attention_alpha")]
    assert sorted(gates) == [f"decoder_stage{i}_attention_alpha" for i in range(4)]

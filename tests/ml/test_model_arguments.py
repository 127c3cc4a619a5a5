"""Bad builder arguments fail early with a message that says what to do."""

import keras
import numpy as np
import pytest

from ml.models import build_model


def test_unknown_encoder_lists_the_choices():
    with pytest.raises(ValueError, match="plain, vgg16, efficientnetb0"):
        build_model("unet", "resnet50")


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(ValueError, match="unet, unet_plus_plus, attention_unet"):
        build_model("segnet")


@pytest.mark.parametrize("encoder,size", [("plain", 100), ("efficientnetb0", 48), ("vgg16", 8 * 3)])
def test_input_size_must_match_the_encoder_divisor(encoder, size):
    with pytest.raises(ValueError, match="multiple of"):
        build_model("unet", encoder, input_size=size)


def test_a_missing_weights_file_is_reported():
    with pytest.raises(ValueError, match="does not exist"):
        build_model("unet", "vgg16", input_size=32, encoder_weights="/no/such/weights.h5")


def test_imagenet_download_failure_says_how_to_proceed(monkeypatch):

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(RuntimeError, match="--encoder-weights PATH"):
        build_model("unet", "vgg16", input_size=32, encoder_weights="imagenet")


def test_a_local_weights_file_is_loaded_into_the_encoder(tmp_path):

    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    source.save_weights(path)
    model = build_model("unet", "vgg16", input_size=32, base_filters=4, encoder_weights=str(path))
    backbone = model.get_layer("vgg16_backbone")
    np.testing.assert_array_equal(
        backbone.get_layer("block1_conv1").get_weights()[0], source.get_layer("block1_conv1").get_weights()[0]
    )

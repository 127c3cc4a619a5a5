"""Knowledge distillation (``--distill-from``): soft targets from teacher bundles, kept soft through
augmentation, recorded in the new bundle's metadata."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from django.core.management import CommandError, call_command

import ml.inference
from ml.data import Augmentation, _augment
from ml.inference import clear_cache, file_sha256, load_segmenter, save_bundle
from ml.models import ModelSpec
from ml.train import TrainConfig, teacher_targets
from ml.training.distillation import distillation_meta

pytestmark = pytest.mark.slow


def _constant_teacher(directory, name, probability, size=32):
    """A tiny U-Net bundle whose head outputs ``probability`` everywhere (zero kernel, bias = its logit)."""

    spec = ModelSpec(architecture="unet", input_size=size, base_filters=2, depth=2)
    model = spec.build()
    head = model.get_layer("mask")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, math.log(probability / (1 - probability)))])
    return save_bundle(model, directory, name, {"spec": spec.get_config(), "threshold": 0.5})


def test_targets_mix_the_expert_mask_with_the_teachers_mean_probability(tmp_path):
    paths = [_constant_teacher(tmp_path, "low", 0.2), _constant_teacher(tmp_path, "high", 0.6)]
    images = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    masks = np.zeros((3, 32, 32, 1), np.float32)
    masks[:, 8:16, 8:16] = 1.0

    targets = teacher_targets(paths, images, masks, 0.25, log=lambda *_: None)

    # teachers' mean 0.4: inside the mask 0.75 * 1 + 0.25 * 0.4, outside 0.25 * 0.4
    expected = np.where(masks == 1.0, 0.85, 0.10)
    np.testing.assert_allclose(targets, expected, atol=1e-5)


def test_teachers_leave_the_model_cache_but_models_loaded_before_stay(tmp_path, monkeypatch):
    loads = []
    real_load = ml.inference._load
    monkeypatch.setattr(
        ml.inference,
        "_load",
        lambda path, precision, runtime: loads.append(path.stem) or real_load(path, precision, runtime),
    )
    served_path, teacher_path = (
        _constant_teacher(tmp_path, "served", 0.3),
        _constant_teacher(tmp_path, "only", 0.7),
    )
    clear_cache()
    served = load_segmenter(served_path)  # e.g. a worker's segmenter, here also used as a teacher
    images = masks = np.zeros((1, 32, 32, 1), np.float32)

    teacher_targets([served_path, teacher_path], images, masks, 0.5, log=lambda *_: None)

    assert loads == ["served", "only"]
    assert load_segmenter(served_path) is served  # kept: it was cached before the call
    load_segmenter(teacher_path)
    assert loads == ["served", "only", "only"]  # loaded for the call only, then dropped


def test_a_teacher_of_another_input_size_is_refused(tmp_path):
    path = _constant_teacher(tmp_path, "big", 0.5, size=64)
    with pytest.raises(ValueError, match="takes 64 px inputs; this run trains at 32 px"):
        teacher_targets(
            [path],
            np.zeros((1, 32, 32, 1), np.float32),
            np.zeros((1, 32, 32, 1), np.float32),
            0.5,
            log=lambda *_: None,
        )


def test_augmentation_keeps_a_soft_target_soft_and_a_mask_binary():
    image = tf.fill((16, 16, 1), 0.5)
    target = tf.fill((16, 16, 1), 0.3)
    identity = Augmentation(
        flip=False, max_rotation_deg=0.0, max_scale=0.0, max_brightness=0.0, max_contrast=0.0
    )

    _, soft = _augment(image, target, identity, soft=True)
    _, hard = _augment(image, target, identity)

    np.testing.assert_allclose(soft.numpy(), 0.3, atol=1e-6)
    np.testing.assert_array_equal(hard.numpy(), 0.0)  # re-binarised at 0.5
    _, rotated = _augment(image, target, Augmentation(max_rotation_deg=30.0, max_scale=0.2), soft=True)
    rotated = rotated.numpy()
    assert rotated.min() >= 0.0 and rotated.max() <= 0.3 + 1e-6  # interpolated, with 0 where it fills
    assert rotated[8, 8, 0] == pytest.approx(0.3, abs=1e-6)  # the centre keeps its soft value


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"distill_weight": 0.0}, "distill_weight must be in"),
        ({"distill_weight": 1.5}, "distill_weight must be in"),
        ({"loss": "lovasz"}, "needs binary targets"),
        ({"architecture": "unet_plus_plus", "deep_supervision": True}, "deep-supervision"),
    ],
)
def test_train_config_refuses_what_distillation_cannot_do(tmp_path, changes, message):
    teacher = tmp_path / "t.keras"
    teacher.write_bytes(b"")
    kwargs = {"architecture": "unet", "data_dir": "unused", "distill_from": [str(teacher)], **changes}
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_train_config_refuses_a_missing_teacher(tmp_path):
    with pytest.raises(ValueError, match=r"no teacher model at .*absent\.keras"):
        TrainConfig(architecture="unet", data_dir="unused", distill_from=[str(tmp_path / "absent.keras")])


@pytest.mark.realdata
def test_train_model_distils_and_records_its_teachers(figshare_dir, tmp_path):
    teacher = _constant_teacher(tmp_path, "teacher", 0.3)
    call_command(
        "train_model",
        "--architecture",
        "unet",
        "--data",
        str(figshare_dir),
        "--image-size",
        "32",
        "--base-filters",
        "2",
        "--depth",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--limit",
        "4",
        "--precision",
        "fp32",
        "--name",
        "student",
        "--output-dir",
        str(tmp_path / "m"),
        "--run-dir",
        str(tmp_path / "run"),
        "--distill-from",
        str(teacher),
        "--distill-weight",
        "0.4",
        "--no-register",
    )

    meta = json.loads((tmp_path / "m" / "student.json").read_text())
    distillation = meta["training"]["distillation"]
    assert distillation["weight"] == 0.4
    assert distillation["teachers"] == [{"path": str(teacher), "sha256": file_sha256(teacher)}]
    proba = load_segmenter(tmp_path / "m" / "student.keras").predict_proba([np.zeros((40, 40), np.uint8)])[0]
    assert proba.shape == (40, 40)


def test_without_teachers_the_bundle_records_no_distillation():
    assert distillation_meta(TrainConfig(architecture="unet", data_dir="unused")) is None


def test_train_model_reports_a_bad_distillation_option(figshare_dir, tmp_path):
    with pytest.raises(CommandError, match="no teacher model at"):
        call_command(
            "train_model",
            "--architecture",
            "unet",
            "--data",
            str(figshare_dir),
            "--distill-from",
            str(tmp_path / "absent.keras"),
            "--output-dir",
            str(tmp_path / "m"),
            "--run-dir",
            str(tmp_path / "run"),
        )

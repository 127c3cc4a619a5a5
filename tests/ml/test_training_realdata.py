"""Training on a few real slices: the whole path from the shared folder to a registered bundle."""

import json

import numpy as np
import pytest

from ml.evaluate import THRESHOLDS
from ml.inference import load_segmenter
from ml.train import TrainConfig, train

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_two_training_steps_on_real_slices_write_a_complete_bundle(figshare_dir, tmp_path):
    cfg = TrainConfig(
        architecture="unet",
        data_dir=str(figshare_dir),
        image_size=32,
        base_filters=4,
        depth=3,
        epochs=1,
        batch_size=4,
        limit=8,
        output_dir=str(tmp_path / "models"),
        run_dir=str(tmp_path / "run"),
        name="smoke",
        precision="fp32",
        augmentation="strong",
    )
    result = train(cfg, log=lambda *_: None, verbose=0)

    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 2  # header + one epoch of 8 slices / batch 4 = 2 steps
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    meta = json.loads((tmp_path / "models" / "smoke.json").read_text())
    assert meta["architecture"] == "unet" and meta["encoder_weights"] == "none"
    assert meta["training"]["split"]["by"] == "patient_group"
    assert meta["training"]["augmentation"]["preset"] == "strong"
    assert meta["training"]["augmentation"]["max_rotation_deg"] == 20.0
    assert len(meta["training"]["data_dir_fingerprint"]) == 64
    assert meta["threshold"] in THRESHOLDS  # chosen on validation from the calibration grid
    # the calibration choice as ml.calibrate.apply_choice writes it
    assert isinstance(meta["tta"], bool) and meta["tta_scales"][0] == 1.0
    assert set(meta["postprocess"]) == {"keep_largest", "keep_by", "min_component_px"}
    assert meta["metrics"]["val"]["n"] == 8 and set(meta["metrics"]["val"]["dice_by_type"]) <= {
        "meningioma",
        "glioma",
        "pituitary",
    }
    seg = load_segmenter(result["path"])
    assert seg.predict_proba([np.zeros((256, 256), np.uint8)])[0].shape == (256, 256)


def test_a_finished_run_resumes_instead_of_starting_again(figshare_dir, tmp_path):
    kwargs = {
        "architecture": "unet",
        "data_dir": str(figshare_dir),
        "image_size": 32,
        "base_filters": 4,
        "depth": 2,
        "batch_size": 4,
        "limit": 4,
        "output_dir": str(tmp_path / "models"),
        "run_dir": str(tmp_path / "run"),
        "name": "resume",
        "precision": "fp32",
    }
    train(TrainConfig(epochs=1, **kwargs), log=lambda *_: None, verbose=0)
    messages = []
    train(TrainConfig(epochs=2, **kwargs), log=messages.append, verbose=0)
    assert any("resuming resume after epoch 1" in m for m in messages)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epochs_done"] == 2
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 3


def test_a_warm_start_records_its_source_model_and_how_that_was_trained(figshare_dir, tmp_path):
    kwargs = {
        "architecture": "unet",
        "data_dir": str(figshare_dir),
        "image_size": 32,
        "base_filters": 4,
        "depth": 2,
        "batch_size": 4,
        "limit": 4,
        "epochs": 1,
        "output_dir": str(tmp_path / "models"),
        "precision": "fp32",
    }
    first = train(
        TrainConfig(name="first", run_dir=str(tmp_path / "run1"), **kwargs), log=lambda *_: None, verbose=0
    )
    train(
        TrainConfig(name="second", run_dir=str(tmp_path / "run2"), init_from=first["path"], **kwargs),
        log=lambda *_: None,
        verbose=0,
    )
    meta = json.loads((tmp_path / "models" / "second.json").read_text())
    warm = meta["initialised_from"]
    assert warm["path"] == first["path"] and warm["layers_copied"] == warm["layers_with_weights"]
    assert warm["source"]["name"] == "first" and warm["source"]["training"]["epochs_done"] == 1
    assert warm["source"]["initialised_from"] is None  # the chain ends at random initialisation
    assert "continued from the weights of" in meta["encoder_weights_note"]

    # A warm start from a run's checkpoint (no bundle JSON beside it) keeps the chain through state.json.
    train(
        TrainConfig(
            name="third",
            run_dir=str(tmp_path / "run3"),
            init_from=str(tmp_path / "run2" / "last.keras"),
            **kwargs,
        ),
        log=lambda *_: None,
        verbose=0,
    )
    third = json.loads((tmp_path / "models" / "third.json").read_text())["initialised_from"]["source"]
    assert third["name"] == "second" and third["checkpoint"] == "last.keras"
    assert third["training"]["epochs_done"] == 1
    assert third["initialised_from"]["source"]["name"] == "first"

"""``--like BUNDLE.json``: one command trains a model of a shipped bundle's shape from scratch."""

import argparse
import json

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from ml.inference import file_sha256
from ml.train import TrainConfig, add_training_arguments, bundle_recipe, config_from_options, main

SHIPPED = ("unet", "attention_unet", "unet_plus_plus")


def _options(*argv):
    parser = argparse.ArgumentParser()
    add_training_arguments(parser, data_default="data", output_default="models")
    return vars(parser.parse_args(list(argv)))


@pytest.mark.parametrize("name", SHIPPED)
def test_like_builds_the_shipped_bundles_model(name):
    """The config --like makes builds a model of the bundle's spec, parameter for parameter."""

    path = settings.TUMORSITE_MODELS_DIR / f"{name}.json"
    meta = json.loads(path.read_text())
    cfg = config_from_options(_options("--like", str(path)), "data")
    spec = cfg.model_spec().get_config()
    assert {k: spec[k] for k in meta["spec"]} == meta["spec"]
    assert cfg.image_size == meta["input_size"] == 256
    assert cfg.model_spec().build().count_params() == meta["parameters"]
    assert (cfg.augmentation, cfg.loss, cfg.batch_size) == (
        meta["training"]["augmentation"]["preset"],
        meta["training"]["loss"],
        meta["training"]["batch_size"],
    )
    # From scratch: nothing of how the bundle itself was warm-started comes along.
    assert cfg.init_from is None and (cfg.lr_start, cfg.lr_end) == (1e-3, 1e-4)
    assert cfg.name == f"{name}_plain_256" and cfg.like == str(path)


def test_options_given_win_over_the_bundle():
    cfg = config_from_options(
        _options(
            "--like",
            str(settings.TUMORSITE_MODELS_DIR / "unet.json"),
            "--depth",
            "4",
            "--image-size",
            "128",
            "--augmentation",
            "strong",
            "--architecture",
            "attention_unet",
        ),
        "data",
    )
    assert (cfg.architecture, cfg.depth, cfg.image_size, cfg.augmentation) == (
        "attention_unet",
        4,
        128,
        "strong",
    )
    assert (cfg.base_filters, cfg.dropout) == (12, 0.1)  # the rest still from the bundle


def test_without_like_the_defaults_are_the_dataclass_defaults():
    cfg = config_from_options(_options("--architecture", "unet"), "data")
    assert cfg == TrainConfig(architecture="unet", data_dir="data")


def test_a_bundle_without_the_newer_fields_leaves_their_defaults(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps(
            {
                "spec": {"architecture": "unet", "encoder": "plain", "input_size": 128, "base_filters": 16},
                "training": {"augmentation": None},
            }
        )
    )
    assert bundle_recipe(path.with_suffix(".keras")) == {
        "architecture": "unet",
        "encoder": "plain",
        "image_size": 128,
        "base_filters": 16,
        "augmentation": "none",
        "type_weights": {},  # drawn once per epoch each, as before the option
        "type_head": 0.0,  # no type head, as before the option
        "hard_mining": 0.0,  # no mining, as before the option
    }


def test_type_weights_are_parsed_checked_and_win_over_the_bundle():
    like = str(settings.TUMORSITE_MODELS_DIR / "unet.json")
    cfg = config_from_options(
        _options("--like", like, "--type-weight", "glioma=2", "--type-weight", "pituitary=0.5"), "data"
    )
    assert cfg.type_weights == {"glioma": 2.0, "pituitary": 0.5}
    assert config_from_options(_options("--like", like), "data").type_weights == {}
    for bad in ("glioma", "glioma=0", "glioma=x", "astrocytoma=2", "glioma=-1"):
        with pytest.raises(SystemExit):
            _options("--type-weight", bad)
    with pytest.raises(ValueError, match="type weights are <type>=<weight > 0>"):
        TrainConfig(architecture="unet", data_dir="data", type_weights={"glioma": 0.0})


def test_hard_mining_is_read_and_like_carries_it(tmp_path):
    cfg = config_from_options(_options("--architecture", "unet", "--hard-mining", "2"), "data")
    assert cfg.hard_mining == 2.0
    meta = json.loads((settings.TUMORSITE_MODELS_DIR / "unet.json").read_text())
    meta["training"]["hard_mining"] = 1.5
    (tmp_path / "mined.json").write_text(json.dumps(meta))
    assert config_from_options(_options("--like", str(tmp_path / "mined.json")), "data").hard_mining == 1.5
    assert (
        config_from_options(
            _options("--like", str(settings.TUMORSITE_MODELS_DIR / "unet.json")), "data"
        ).hard_mining
        == 0.0
    )


def test_bad_like_arguments_say_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no bundle JSON at .*nothing\.json"):
        config_from_options(_options("--like", str(tmp_path / "nothing.keras")), "data")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        config_from_options(_options("--like", str(tmp_path / "broken.json")), "data")
    (tmp_path / "cases.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(ValueError, match="no model spec"):
        config_from_options(_options("--like", str(tmp_path / "cases.json")), "data")
    with pytest.raises(ValueError, match="pass --architecture, or --like"):
        config_from_options(_options(), "data")


def test_python_m_ml_train_reports_a_missing_architecture(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", "data"])
    assert exit_info.value.code == 2
    assert "pass --architecture, or --like" in capsys.readouterr().err


def test_train_model_reports_a_missing_bundle_before_reading_data(tmp_path):
    with pytest.raises(CommandError, match="no bundle JSON"):
        call_command("train_model", "--like", str(tmp_path / "gone.json"), "--from-record")


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.django_db
def test_train_model_like_trains_and_records_the_bundle_it_copied(figshare_dir, tmp_path):
    like = settings.TUMORSITE_MODELS_DIR / "unet_plus_plus.json"
    call_command(
        "train_model",
        "--like",
        str(like),
        "--data",
        str(figshare_dir),
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--limit",
        "4",
        "--batch-size",
        "4",
        "--precision",
        "fp32",
        "--type-weight",
        "glioma=2",
        "--name",
        "again",
        "--output-dir",
        str(tmp_path / "m"),
        "--run-dir",
        str(tmp_path / "run"),
        "--no-register",
    )
    meta = json.loads((tmp_path / "m" / "again.json").read_text())
    shipped = json.loads(like.read_text())
    assert meta["spec"] == {**shipped["spec"], "input_size": 64, "attention_blocks": 0}
    assert meta["initialised_from"] is None and meta["encoder_weights"] == "none"
    assert meta["training"]["like"]["path"] == str(like)
    assert meta["training"]["like"]["sha256"] == file_sha256(like.with_suffix(".keras"))
    assert (
        "depth" in meta["training"]["like"]["fields"] and "image_size" in meta["training"]["like"]["fields"]
    )
    assert meta["training"]["like"]["overridden"] == ["batch_size", "image_size", "type_weights"]
    assert meta["training"]["type_weights"] == {"glioma": 2.0}

import json
import shutil

import pytest
from django.core.management import call_command

from ml.inference import ensemble_calibration
from segmentation.models import ModelVersion
from segmentation.services import model_versions_sync, primary_model_version
from segmentation.testing import retrain_bundle

pytestmark = pytest.mark.django_db


def test_sync_registers_each_bundle_and_one_ensemble(models_dir):
    versions = model_versions_sync()
    names = sorted(v.name for v in versions)
    assert names == ["ensemble", "tiny_attention_unet", "tiny_unet"]
    ensemble = ModelVersion.objects.get(name="ensemble")
    assert ensemble.is_ensemble and sorted(ensemble.members) == ["tiny_attention_unet", "tiny_unet"]
    unet = ModelVersion.objects.get(name="tiny_unet")
    assert unet.file_path == "tiny_unet.keras" and unet.input_size == 64 and unet.architecture == "unet"


def test_sync_is_idempotent_and_deactivates_vanished_bundles(models_dir, settings, tmp_path):
    model_versions_sync()
    model_versions_sync()
    assert ModelVersion.objects.count() == 3
    settings.TUMORSITE_MODELS_DIR = tmp_path  # empty
    model_versions_sync()
    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_primary_model_is_configurable(models_dir, settings):
    model_versions_sync()
    assert primary_model_version().name == "ensemble"
    settings.TUMORSITE_PRIMARY_MODEL = "tiny_unet"
    assert primary_model_version().name == "tiny_unet"


def test_sync_models_command_lists_what_it_registered(models_dir, capsys):
    call_command("sync_models")
    out = capsys.readouterr().out
    assert "ensemble: ensemble = mean(tiny_attention_unet, tiny_unet)" in out


def test_the_ensemble_takes_its_calibration_when_made_for_its_members(models_dir, tmp_path, settings):
    for f in models_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    settings.TUMORSITE_MODELS_DIR = tmp_path
    (tmp_path / "ensemble.json").write_text(
        json.dumps(
            {
                "members": ["tiny_unet", "tiny_attention_unet"],
                "threshold": 0.35,
                "postprocess": {"keep_largest": True, "min_component_px": 0},
                "tta": False,
                "agreement": {"flag_below": 0.55, "chosen_on": "val"},
            }
        )
    )
    model_versions_sync()
    ensemble = ModelVersion.objects.get(name="ensemble")
    assert ensemble.threshold == 0.35 and ensemble.metadata["postprocess"]["keep_largest"] is True
    assert ensemble.metadata["agreement"]["flag_below"] == 0.55
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": ["other"], "threshold": 0.9}))
    model_versions_sync()
    assert ModelVersion.objects.get(name="ensemble").threshold == 0.0  # mean of the members' own


def test_a_corrupt_ensemble_json_is_ignored_with_a_warning(models_dir, tmp_path, settings, caplog):
    for f in models_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    settings.TUMORSITE_MODELS_DIR = tmp_path
    (tmp_path / "ensemble.json").write_text('{"members": ["tiny_unet", ')  # cut short, e.g. a full disk
    with pytest.raises(ValueError):
        ensemble_calibration(tmp_path, ["tiny_unet", "tiny_attention_unet"])
    model_versions_sync()
    ensemble = ModelVersion.objects.get(name="ensemble")
    assert ensemble.is_active and ensemble.threshold == 0.0 and ensemble.metadata["calibrated"] is False
    assert "ensemble.json: not valid JSON" in caplog.text


def test_new_weights_under_the_same_name_get_a_new_weights_key(models_dir, tmp_path, settings, caplog):
    caplog.set_level("INFO", logger="segmentation.services")

    for f in models_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    settings.TUMORSITE_MODELS_DIR = tmp_path
    model_versions_sync()
    before = ModelVersion.objects.get(name="tiny_unet")
    assert len(before.file_sha256) == 64 and before.weights_key == f"tiny_unet@{before.file_sha256[:12]}"
    assert ModelVersion.objects.get(name="ensemble").weights_key == "ensemble"

    model_versions_sync()  # same files: same key, no warning
    assert ModelVersion.objects.get(name="tiny_unet").weights_key == before.weights_key
    assert "new weights" not in caplog.text

    retrain_bundle(tmp_path, "tiny_unet", seed=123)
    model_versions_sync()
    after = ModelVersion.objects.get(name="tiny_unet")
    assert after.pk != before.pk and after.weights_key != before.weights_key
    before.refresh_from_db()  # never repointed: still the old weights, retired under their own key
    assert before.stage == "retired" and before.name == before.weights_key
    assert "new weights for tiny_unet" in caplog.text

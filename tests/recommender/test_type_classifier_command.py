"""`manage.py train_type_classifier`: one command trains and writes the bundle; bad input is refused."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ml.models import build_model


@pytest.mark.slow
@pytest.mark.realdata
def test_one_command_trains_and_writes_the_classifier(figshare_dir, tmp_path):
    out = StringIO()
    call_command(
        "train_type_classifier",
        "--data",
        str(figshare_dir),
        "--image-size",
        "32",
        "--base-filters",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--limit",
        "8",
        "--precision",
        "fp32",
        "--output-dir",
        str(tmp_path / "out"),
        "--run-dir",
        str(tmp_path / "run"),
        "--name",
        "tc",
        stdout=out,
    )
    meta = json.loads((tmp_path / "out" / "tc.json").read_text())
    assert meta["task"] == "tumour_type_classification" and meta["metrics"]["val"]["n"] == 8
    assert "tc: validation accuracy" in out.getvalue()
    assert "TUMORSITE_TYPE_CLASSIFIER points elsewhere" in out.getvalue()  # the tests run with it off


def test_a_folder_that_is_not_in_the_shared_layout_is_refused(tmp_path):
    with pytest.raises(CommandError, match=r"no cases\.csv"):
        call_command("train_type_classifier", "--data", str(tmp_path), "--output-dir", str(tmp_path / "out"))


@pytest.mark.realdata
def test_a_warm_start_that_shares_nothing_is_refused(figshare_dir, tmp_path):
    build_model("unet", input_size=32, base_filters=8, depth=2).save(tmp_path / "wide.keras")
    with pytest.raises(CommandError, match="shares no layer"):
        call_command(
            "train_type_classifier",
            "--data",
            str(figshare_dir),
            "--image-size",
            "32",
            "--base-filters",
            "4",
            "--epochs",
            "1",
            "--limit",
            "4",
            "--init-from",
            str(tmp_path / "wide.keras"),
            "--output-dir",
            str(tmp_path / "out"),
            "--run-dir",
            str(tmp_path / "run"),
            stdout=StringIO(),
        )
    assert not (tmp_path / "out").exists()

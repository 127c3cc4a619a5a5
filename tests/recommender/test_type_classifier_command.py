"""`manage.py train_type_classifier`: one command trains the classifier and registers it as a candidate, never
as the served one; bad input is refused."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from cases.models import Case, TypeSource
from ml.data import read_records
from ml.models import build_model
from segmentation.models import ModelVersion
from segmentation.testing import make_case_base


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.django_db
def test_one_command_trains_the_classifier_and_registers_a_candidate(figshare_dir, tmp_path, settings):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "models"
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
    candidate = ModelVersion.objects.get()
    assert (candidate.slot, candidate.kind, candidate.stage, candidate.is_active) == (
        "type_classifier",
        "type_classifier",
        "candidate",
        False,
    )
    assert f"registered candidate {candidate.name} for slot type_classifier (not served)" in out.getvalue()
    assert (settings.TUMORSITE_MODELS_DIR / candidate.file_path).is_file()


def test_it_never_writes_where_the_served_classifier_or_segmenters_are(tmp_path, settings):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "models"
    settings.TUMORSITE_TYPE_CLASSIFIER = str(
        tmp_path / "models" / "type_classifier" / "type_classifier.keras"
    )
    for served in (tmp_path / "models", tmp_path / "models" / "type_classifier"):
        with pytest.raises(CommandError, match="holds served models"):
            call_command("train_type_classifier", "--data", str(tmp_path), "--output-dir", str(served))


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


@pytest.mark.slow
@pytest.mark.django_db
def test_from_the_record_it_learns_trusted_types_only_and_ends_with_a_candidate(
    tmp_path, settings, media_dir
):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "models"
    cases = make_case_base(n_per_type=6, size=64)  # imported, each with the dataset's type
    suggested = cases[0]
    Case.objects.filter(pk=suggested.pk).update(tumour_type_source=TypeSource.PREDICTED)
    call_command(
        "export_cases", str(tmp_path / "export"), "--trusted-types", "--no-progress", stdout=StringIO()
    )
    exported = {r.id for r in read_records(tmp_path / "export")}
    assert len(exported) == len(cases) - 1 and f"case{suggested.pk}" not in exported

    out = StringIO()
    call_command(
        "train_type_classifier",
        "--from-record",
        *("--image-size", "32", "--base-filters", "4", "--epochs", "1", "--batch-size", "4"),
        *("--precision", "fp32", "--run-dir", str(tmp_path / "run"), "--name", "tc"),
        stdout=out,
    )
    assert f"exported {len(cases) - 1}" in out.getvalue()
    candidate = ModelVersion.objects.get(kind="type_classifier")
    assert (candidate.stage, candidate.is_active, candidate.slot) == ("candidate", False, "type_classifier")

"""train_model and evaluate_segmentation, end to end on tiny data."""

import csv
import json
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from ml.data import read_records, split_ids_as_trained
from ml.inference import load_segmenter, save_bundle
from ml.models import ModelSpec
from ml.postprocess import binarize
from ml.train import TrainConfig, train
from segmentation.management.commands.evaluate_segmentation import CLEANUP_CHOICES, Command
from segmentation.models import ModelVersion
from segmentation.services import model_versions_sync

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def _full_size_dir(figshare_dir, tmp_path, n=3):
    """A shared-layout folder built from the 512x512 samples (images and masks at 512)."""
    src = figshare_dir / "samples_512"
    rows = {r["id"]: r for r in csv.DictReader((figshare_dir / "cases.csv").open())}
    ids = sorted(p.stem for p in src.glob("*.png") if not p.stem.endswith("_mask"))[:n]
    out = tmp_path / "data512"
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for i in ids:
        shutil.copy(src / f"{i}.png", out / "images" / f"{i}.png")
        shutil.copy(src / f"{i}_mask.png", out / "masks" / f"{i}.png")
    with (out / "cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(next(iter(rows.values()))))
        writer.writeheader()
        writer.writerows(rows[i] for i in ids)
    return out, ids


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    for arch in ("unet", "attention_unet"):
        spec = ModelSpec(architecture=arch, input_size=32, base_filters=4, depth=3)
        zoom = {"tta_scales": [1.0, 1.15]} if arch == "unet" else {}  # the other keeps the default, no zoom
        save_bundle(
            spec.build(), directory, f"tiny_{arch}", {"spec": spec.get_config(), "threshold": 0.5, **zoom}
        )
    return directory


def test_evaluate_segmentation_scores_every_model_and_the_ensemble_at_full_size(
    figshare_dir, tmp_path, tiny_models
):
    data, ids = _full_size_dir(figshare_dir, tmp_path)
    assert Image.open(data / "images" / f"{ids[0]}.png").size == (512, 512)
    out = tmp_path / "eval.json"
    call_command(
        "evaluate_segmentation", "--data", str(data), "--models-dir", str(tiny_models), "--json", str(out)
    )
    written = json.loads(out.read_text())
    result = written["models"]
    assert set(result) == {"tiny_unet", "tiny_attention_unet", "ensemble"}
    for scores in result.values():
        assert scores["n"] == len(ids)
        assert 0.0 <= scores["dice_mean"] <= 1.0 and 0.0 <= scores["iou_mean"] <= scores["dice_mean"] + 1e-9
        assert set(scores["dice_by_type"]) <= {"meningioma", "glioma", "pituitary"}
        assert scores["ms_per_slice"] > 0
        lo, hi = scores["dice_ci95"]
        assert lo - 1e-9 <= scores["dice_mean"] <= hi + 1e-9
        assert "dice_per_slice" not in scores
    # Each model's zoom TTA is its bundle's own, and the ensemble's members keep theirs.
    for name in ("tiny_unet", "tiny_attention_unet"):
        saved = {"tiny_unet": [1.0, 1.15], "tiny_attention_unet": [1.0]}[name]
        assert result[name]["tta_scales"] == {name: saved} and result["ensemble"]["tta_scales"][name] == saved
    # Scored alone, the ensemble predicts its members itself: the same figures as from their stored maps.
    call_command(
        "evaluate_segmentation",
        "--data",
        str(data),
        "--models-dir",
        str(tiny_models),
        "--json",
        str(out),
        "--models",
        "ensemble",
    )
    alone = json.loads(out.read_text())["models"]["ensemble"]
    assert (alone["dice_mean"], alone["iou_mean"]) == (
        result["ensemble"]["dice_mean"],
        result["ensemble"]["iou_mean"],
    )
    assert (
        result["ensemble"]["ms_per_slice"] > result["tiny_unet"]["ms_per_slice"]
    )  # the members' cost included
    call_command(
        "evaluate_segmentation",
        "--data",
        str(data),
        "--models-dir",
        str(tiny_models),
        "--json",
        str(out),
        "--models",
        "ensemble",
        "--zoom",
        "off",
    )
    assert json.loads(out.read_text())["models"]["ensemble"]["tta_scales"] == {
        "tiny_unet": [1.0],
        "tiny_attention_unet": [1.0],
    }
    # One paired comparison per pair of models; the mean difference is the difference of the means.
    pairs = [tuple(key.split(" - ")) for key in written["paired"]]
    assert len(pairs) == 3 and {frozenset(p) for p in pairs} == {
        frozenset(p)
        for p in [
            ("tiny_unet", "tiny_attention_unet"),
            ("tiny_unet", "ensemble"),
            ("tiny_attention_unet", "ensemble"),
        ]
    }
    for a, b in pairs:
        diff = written["paired"][f"{a} - {b}"]
        assert diff["dice_diff"] == pytest.approx(result[a]["dice_mean"] - result[b]["dice_mean"])
        assert diff["ci95"][0] - 1e-9 <= diff["dice_diff"] <= diff["ci95"][1] + 1e-9


def test_evaluate_segmentation_writes_a_row_per_model_and_slice(figshare_dir, tmp_path, tiny_models):
    data, ids = _full_size_dir(figshare_dir, tmp_path)
    out, table = tmp_path / "eval.json", tmp_path / "per_slice" / "rows.csv"
    call_command(
        "evaluate_segmentation",
        "--data",
        str(data),
        "--models-dir",
        str(tiny_models),
        "--json",
        str(out),
        "--per-slice",
        str(table),
    )
    result = json.loads(out.read_text())["models"]
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 3 * len(ids)
    cases = {r["id"]: r for r in csv.DictReader((data / "cases.csv").open())}
    for name, scores in result.items():
        mine = [r for r in rows if r["model"] == name]
        assert [r["id"] for r in mine] == ids
        assert np.mean([float(r["dice"]) for r in mine]) == pytest.approx(scores["dice_mean"], abs=1e-6)
        assert np.mean([float(r["iou"]) for r in mine]) == pytest.approx(scores["iou_mean"], abs=1e-6)
        for r in mine:
            truth = np.asarray(Image.open(data / "masks" / f"{r['id']}.png")) > 0
            assert int(r["truth_px"]) == truth.sum() > 0
            assert r["patient_group"] == cases[r["id"]]["patient_group"]
            assert r["tumour_type"] == cases[r["id"]]["label_name"]
            predicted, dice = int(r["predicted_px"]), float(r["dice"])
            assert 0 <= predicted <= truth.size
            # Dice = 2 |A and B| / (|A| + |B|): the pixel counts must give a whole overlap that fits both
            # masks, up to the rounding of the Dice written with 6 decimals (half a unit of the last one).
            overlap = dice * (truth.sum() + predicted) / 2
            slack = 0.5e-6 * (truth.sum() + predicted) / 2 + 1e-9
            assert overlap <= min(truth.sum(), predicted) + slack and abs(overlap - round(overlap)) <= slack


def test_evaluate_segmentation_scores_a_fold_model_on_its_own_folds_validation(figshare_dir, tmp_path):
    """Cross-validation bundles side by side: each is scored on its fold's validation patients, never on
    another fold's (which it trained on), and a choice that would mix folds is refused."""
    directory = tmp_path / "cv"
    spec = ModelSpec(architecture="unet", input_size=32, base_filters=4, depth=3)
    splits = {f"fold{k}": {"by": "patient_group", "seed": 42, "fold": k, "folds": 5} for k in (0, 1)}
    for name, split in splits.items():
        meta = {"spec": spec.get_config(), "threshold": 0.5, "training": {"split": split}}
        save_bundle(spec.build(), directory, name, meta)
    records = read_records(figshare_dir)
    for name, split in splits.items():
        table = tmp_path / f"{name}.csv"
        call_command(
            "evaluate_segmentation",
            *("--data", str(figshare_dir), "--models-dir", str(directory), "--models", name),
            *(
                "--split",
                "val",
                "--limit",
                "3",
                "--json",
                str(tmp_path / "out.json"),
                "--per-slice",
                str(table),
            ),
        )
        scored = [r["id"] for r in csv.DictReader(table.open())]
        assert scored == split_ids_as_trained(records, split, "val")[:3]
        assert not set(scored) & set(split_ids_as_trained(records, split, "train"))
    with pytest.raises(CommandError, match="different splits"):
        call_command(
            "evaluate_segmentation",
            *("--data", str(figshare_dir), "--models-dir", str(directory), "--split", "val"),
            *("--limit", "3", "--json", str(tmp_path / "out.json")),
        )


def test_evaluate_segmentation_refuses_unknown_models_and_bad_folders(tmp_path, tiny_models, figshare_dir):
    with pytest.raises(CommandError, match=r"no cases\.csv"):
        call_command(
            "evaluate_segmentation",
            "--data",
            str(tmp_path),
            "--models-dir",
            str(tiny_models),
            "--json",
            str(tmp_path / "x.json"),
        )
    with pytest.raises(CommandError, match="Unknown model"):
        call_command(
            "evaluate_segmentation",
            "--data",
            str(figshare_dir),
            "--models-dir",
            str(tiny_models),
            "--models",
            "nope",
            "--json",
            str(tmp_path / "x.json"),
        )


def test_evaluate_segmentation_refuses_masks_of_another_size(figshare_dir, tmp_path, tiny_models):
    data, ids = _full_size_dir(figshare_dir, tmp_path, n=1)
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(data / "masks" / f"{ids[0]}.png")
    with pytest.raises(ValueError, match="differ in size"):
        call_command(
            "evaluate_segmentation",
            "--data",
            str(data),
            "--models-dir",
            str(tiny_models),
            "--json",
            str(tmp_path / "x.json"),
        )


@pytest.mark.django_db
def test_train_model_writes_the_bundle_and_registers_a_candidate(figshare_dir, tmp_path, settings):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "models"

    call_command(
        "train_model",
        "--architecture",
        "attention_unet",
        "--data",
        str(figshare_dir),
        "--image-size",
        "32",
        "--base-filters",
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
        "smoke_att",
        "--output-dir",
        str(tmp_path / "m"),  # a candidate is registered from any folder but the top of models/
        "--run-dir",
        str(tmp_path / "run"),
        "--lr-start",
        "3e-4",
        "--lr-end",
        "3e-5",
        "--augmentation",
        "none",
        "--dropout",
        "0.2",
        "--patience",
        "3",
        "--keep-epochs",
        "--attention-blocks",
        "1",
        "--warmup-epochs",
        "0.5",
    )
    meta = json.loads((tmp_path / "m" / "smoke_att.json").read_text())
    assert meta["spec"]["attention_blocks"] == 1
    assert [p.name for p in (tmp_path / "run" / "epochs").iterdir()] == ["epoch_01.keras"]
    assert meta["training"]["early_stopping"] == {"monitor": "val_dice", "patience": 3}
    assert meta["training"]["augmentation"] is None and meta["spec"]["dropout"] == 0.2
    assert meta["spec"]["architecture"] == "attention_unet" and meta["input_size"] == 32
    assert meta["training"]["lr"]["start"] == 3e-4 and meta["training"]["lr"]["end"] == 3e-5
    assert meta["training"]["lr"]["warmup_epochs"] == 0.5
    version = ModelVersion.objects.get(slot="smoke_att")
    assert version.architecture == "attention_unet" and version.threshold == meta["threshold"]
    assert (version.stage, version.is_active) == ("candidate", False)  # served only after promote_model
    assert (tmp_path / "models" / version.file_path).is_file() and version.file_path.startswith("candidates/")
    assert not ModelVersion.objects.filter(is_active=True).exists()


@pytest.mark.django_db
def test_train_model_under_a_served_name_leaves_the_served_versions_alone(figshare_dir, tmp_path, settings):
    """A model trained under a served name is a candidate: nothing served is repointed or deactivated."""
    shipped = Path(settings.TUMORSITE_MODELS_DIR)
    settings.TUMORSITE_MODELS_DIR = tmp_path / "models"  # the candidate is written into candidates/
    settings.TUMORSITE_MODELS_DIR.mkdir()
    for bundle in shipped.glob("*.keras"):
        for f in (bundle, bundle.with_suffix(".json")):
            shutil.copy(f, settings.TUMORSITE_MODELS_DIR / f.name)
    model_versions_sync()
    served = {v.name: (v.file_path, v.is_active) for v in ModelVersion.objects.all()}
    assert served["unet"] == ("unet.keras", True)
    out = StringIO()
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
        "unet",
        "--output-dir",
        str(tmp_path / "cand"),
        "--run-dir",
        str(tmp_path / "run"),
        stdout=out,
    )
    assert (tmp_path / "cand" / "unet.keras").is_file()
    candidate = ModelVersion.objects.get(slot="unet", stage="candidate")
    assert f"registered candidate {candidate.name} for slot unet (not served)" in out.getvalue()
    assert {
        v.name: (v.file_path, v.is_active) for v in ModelVersion.objects.exclude(pk=candidate.pk)
    } == served


def test_train_model_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(CommandError, match=r"no cases\.csv"):
        call_command("train_model", "--architecture", "unet", "--data", str(tmp_path))


@pytest.mark.django_db
def test_train_model_can_learn_from_the_clinical_record(figshare_dir, tmp_path):
    """Imported cases go out through export_cases and come back in as training data."""
    rows = list(csv.DictReader((figshare_dir / "cases.csv").open()))[::60]  # ~40 slices, many patients
    data = tmp_path / "subset"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for r in rows:
        shutil.copy(figshare_dir / "images" / f"{r['id']}.png", data / "images")
        shutil.copy(figshare_dir / "masks" / f"{r['id']}.png", data / "masks")
    with (data / "cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    call_command("import_cases", str(data), "--no-progress")

    call_command(
        "train_model",
        "--architecture",
        "unet",
        "--from-record",
        "--image-size",
        "32",
        "--base-filters",
        "2",
        "--depth",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--limit",
        "4",
        "--precision",
        "fp32",
        "--name",
        "from_record",
        "--output-dir",
        str(tmp_path / "m"),
        "--run-dir",
        str(tmp_path / "run"),
        "--no-register",
    )
    meta = json.loads((tmp_path / "m" / "from_record.json").read_text())
    assert sum(meta["training"]["split"]["sizes"].values()) == len(rows)
    assert meta["spec"]["depth"] == 3


def test_training_refuses_data_with_no_validation_patients(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "cases.csv").write_text("id,label,label_name,pid,patient_group\n1,1,meningioma,p1,p1\n")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "images" / "1.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "masks" / "1.png")
    with pytest.raises(ValueError, match="too few patient groups"):
        train(
            TrainConfig(architecture="unet", data_dir=str(tmp_path), run_dir=str(tmp_path / "r")),
            log=lambda *_: None,
        )


@pytest.mark.django_db
def test_train_model_trains_a_deep_supervision_unet_plus_plus_whose_bundle_segments(
    figshare_dir, tmp_path, recwarn
):
    call_command(
        "train_model",
        "--architecture",
        "unet_plus_plus",
        "--data",
        str(figshare_dir),
        "--image-size",
        "32",
        "--base-filters",
        "2",
        "--depth",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--limit",
        "4",
        "--precision",
        "fp32",
        "--name",
        "smoke_ds",
        "--output-dir",
        str(tmp_path / "m"),
        "--run-dir",
        str(tmp_path / "run"),
        "--deep-supervision",
        "--no-register",
    )
    meta = json.loads((tmp_path / "m" / "smoke_ds.json").read_text())
    assert meta["spec"]["deep_supervision"] is True
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert "val_mask_x03_dice" in log[0].split(",")  # the last head's Dice picks the best epoch
    assert not [w for w in recwarn if "No artists" in str(w.message)]  # the curve plots that Dice
    seg = load_segmenter(tmp_path / "m" / "smoke_ds.keras")
    proba = seg.predict_proba([np.zeros((48, 48), np.uint8)])[0]
    assert proba.shape == (48, 48) and 0.0 <= proba.min() <= proba.max() <= 1.0


def test_train_model_refuses_deep_supervision_outside_unet_plus_plus(figshare_dir, tmp_path):
    with pytest.raises(CommandError, match="only defined for unet_plus_plus"):
        call_command(
            "train_model",
            "--architecture",
            "unet",
            "--data",
            str(figshare_dir),
            "--deep-supervision",
            "--output-dir",
            str(tmp_path / "m"),
            "--run-dir",
            str(tmp_path / "run"),
        )


def test_evaluate_segmentation_cleanup_choices_pick_the_regions_they_name():
    """--cleanup replaces the model's own: every region, the largest, or the one with the highest peak."""
    prob = np.zeros((20, 20), np.float32)
    prob[1:9, 1:9] = 0.6  # the larger region, a low peak
    prob[14:17, 14:17] = 0.95  # the smaller one, a high peak

    class Model:
        threshold = 0.5
        postprocess = {"min_component_px": 0, "keep_largest": True, "keep_by": "area"}

        def predict_proba(self, images, tta=None, scales=None):
            return [prob for _ in images]

        def binarize(self, p):
            return binarize(p, self.threshold, **self.postprocess)

    def pixels(cleanup):
        predict = Command._predictor(
            Model(), ["m"], {}, reuse=False, keep=False, tta=None, scales=None, cleanup=cleanup
        )
        return int(predict([np.zeros((20, 20))])[0].sum())

    assert pixels(None) == 64  # the model's own: the largest
    assert pixels(CLEANUP_CHOICES["none"]) == 64 + 9
    assert pixels(CLEANUP_CHOICES["largest"]) == 64
    assert pixels(CLEANUP_CHOICES["peak"]) == 9

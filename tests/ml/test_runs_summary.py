"""``python -m ml.runs``: trained bundles side by side, from their JSON and their run's log.csv."""

import json

import pytest

from ml.runs import main, summarise, table
from tests.conftest import REPO_ROOT


def _bundle(tmp_path, name="cand", **overrides):
    meta = {
        "name": name,
        "spec": {"architecture": "unet"},
        "architecture": "unet",
        "encoder": "plain",
        "encoder_weights": "none",
        "input_size": 256,
        "parameters": 4_380_000,
        "initialised_from": None,
        "threshold": 0.25,
        "tta_scales": [1.0, 1.15],
        "training": {"epochs_done": 3, "best_epoch": 2, "train_seconds": 600.0, "precision": "bf16"},
        "metrics": {
            "val": {
                "dice_mean": 0.76053,
                "iou_mean": 0.6,
                "dice_by_type": {"pituitary": 0.8, "glioma": 0.6, "meningioma": 0.9},
            }
        },
    }
    meta.update(overrides)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(meta))
    (tmp_path / f"{name}.keras").write_bytes(b"x" * 2_500_000)
    return path


def test_a_bundle_is_summarised_with_its_per_epoch_log(tmp_path):
    (tmp_path / "runs" / "cand").mkdir(parents=True)
    (tmp_path / "runs" / "cand" / "log.csv").write_text(
        "epoch,dice,val_dice\n0,0.1,0.05\n1,0.5,0.41\n2,0.6,0.38\n"
    )
    row = summarise(_bundle(tmp_path), tmp_path / "runs")
    assert row["val_dice_mean"] == 0.76053 and row["bundle_mb"] == 2.5
    assert row["in_training_val_dice_by_epoch"] == [0.05, 0.41, 0.38]
    assert row["train_dice_by_epoch"] == [0.1, 0.5, 0.6]
    assert list(row["val_dice_by_type"]) == ["glioma", "meningioma", "pituitary"]
    assert row["initialised_from"] is False and row["like"] is None


def test_the_table_rounds_once_and_says_how_each_run_started(tmp_path):
    rows = [
        summarise(_bundle(tmp_path), tmp_path),
        summarise(_bundle(tmp_path, "warm", initialised_from={"path": "models/unet.keras"}), tmp_path),
    ]
    lines = table(rows).splitlines()
    assert lines[2] == "| cand | plain | 4.38 M | init: none | 3 (2) | 10 | 0.761 | 0.900 / 0.600 / 0.800 |"
    assert "| warm start |" in lines[3] and "in_training_val_dice_by_epoch" not in rows[0]


def test_main_writes_the_json_and_refuses_what_is_not_a_bundle(tmp_path, capsys):
    out = tmp_path / "screen.json"
    main([str(_bundle(tmp_path)), "--runs-dir", str(tmp_path), "--note", "a screen", "--json", str(out)])
    written = json.loads(out.read_text())
    assert written["note"] == "a screen" and written["runs"][0]["name"] == "cand"
    assert "| cand |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(REPO_ROOT / "models" / "ensemble.json")])
    assert "not the JSON of a trained bundle" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "absent.json")])
    assert "no bundle JSON" in capsys.readouterr().err

"""ml.agreement: members' agreement, and how well a low one flags failed masks; figures by hand."""

import csv
import json
import shutil

import keras
import numpy as np
import pytest

from ml.agreement import choose_flag_below, flag_report, main, mask_agreement, study
from ml.data import read_records, split_ids_as_trained
from ml.inference import save_bundle
from ml.models import ModelSpec
from tests.conftest import REPO_ROOT


def _mask(cells, shape=(4, 4)):
    m = np.zeros(shape, bool)
    for r, c in cells:
        m[r, c] = True
    return m


def test_agreement_is_the_mean_pairwise_dice_of_the_member_masks():
    a = _mask([(0, 0), (0, 1), (1, 0), (1, 1)])  # 4 px
    b = _mask([(0, 0), (0, 1)])  # 2 px, inside a
    c = _mask([(3, 3)])  # 1 px, apart from both
    # Dice(a, b) = 2*2/(4+2) = 2/3; Dice(a, c) = 0; Dice(b, c) = 0.
    assert mask_agreement([a, b]) == pytest.approx(2 / 3)
    assert mask_agreement([a, b, c]) == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert mask_agreement([a, a, a]) == pytest.approx(1.0)


def test_two_empty_masks_agree_and_one_mask_has_no_agreement():
    empty = _mask([])
    assert mask_agreement([empty, empty]) == pytest.approx(1.0)
    assert mask_agreement([empty, _mask([(1, 1)])]) == pytest.approx(0.0, abs=1e-5)
    assert mask_agreement([empty]) is None
    with pytest.raises(ValueError, match="different shapes"):
        mask_agreement([empty, np.zeros((5, 5), bool)])


def test_flag_report_counts_caught_failures_and_spared_good_masks():
    agreement = [0.1, 0.3, 0.8, 0.9, 0.2, 0.95]
    dice = [0.0, 0.9, 0.85, 0.1, 0.3, 0.9]  # failures (< 0.5): slices 0, 3, 4
    r = flag_report(agreement, dice, 0.5)  # flagged: slices 0, 1, 4
    assert (r["n"], r["n_failures"], r["n_flagged"]) == (6, 3, 3)
    assert r["sensitivity"] == pytest.approx(2 / 3)  # slices 0 and 4 of 0, 3, 4
    assert r["specificity"] == pytest.approx(2 / 3)  # slices 2 and 5 of 1, 2, 5
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["dice_flagged"] == pytest.approx((0.0 + 0.9 + 0.3) / 3)
    assert r["dice_not_flagged"] == pytest.approx((0.85 + 0.1 + 0.9) / 3)


def test_the_flag_level_separates_failures_when_agreement_does():
    agreement = [0.12, 0.22, 0.31, 0.72, 0.81, 0.93]
    dice = [0.1, 0.0, 0.4, 0.8, 0.9, 0.7]
    # Every level from 0.35 to 0.70 catches the three failures and spares the rest (J = 1); the lowest wins.
    assert choose_flag_below(agreement, dice) == pytest.approx(0.35)
    s = study(agreement, dice, ["glioma"] * 3 + ["meningioma"] * 3)
    # Dice ranks by slice 2, 1, 3, 5, 6, 4 against 1..6: sum d^2 = 8, rho = 1 - 6 * 8 / (6 * 35).
    assert s["failure_auc"] == pytest.approx(1.0) and s["spearman_rho"] == pytest.approx(1 - 48 / 210)
    assert s["failures_by_type"] == {"glioma": 3, "meningioma": 0}


def test_the_area_under_the_curve_counts_ties_as_half():
    # One failure and two successes, all with the same agreement: no better than a coin.
    s = study([0.5, 0.5, 0.5], [0.1, 0.9, 0.8], ["glioma"] * 3)
    assert s["failure_auc"] == pytest.approx(0.5)
    assert s["spearman_rho"] is None  # a constant side has no rank correlation (and JSON has no NaN)


def test_write_chooses_on_the_validation_split_only(capsys):
    with pytest.raises(SystemExit):
        main(["--data", "x", "--split", "test", "--write"])
    assert "--write chooses on the validation split only" in capsys.readouterr().err


def test_the_shipped_flag_level_is_the_one_the_rule_picks_from_the_published_validation_slices():
    """The committed figures hang together: ensemble.json's level is chosen from docs/results' validation
    slices, and the test summary follows from its slices at that level and from the published masks."""

    results = REPO_ROOT / "docs" / "results"
    shipped = json.loads((REPO_ROOT / "models" / "ensemble.json").read_text())
    val = json.loads((results / "agreement_val.json").read_text())
    test = json.loads((results / "agreement_test.json").read_text())
    assert val["members"] == test["members"] == sorted(shipped["members"])
    level = choose_flag_below(val["slices"]["agreement"], val["slices"]["dice"])
    assert (
        shipped["agreement"]["flag_below"] == level == val["flag"]["flag_below"] == test["flag"]["flag_below"]
    )
    assert len(val["slices"]["dice"]) == 385 and len(test["slices"]["dice"]) == 406
    assert test["flag"] == flag_report(test["slices"]["agreement"], test["slices"]["dice"], level)
    assert study(test["slices"]["agreement"], test["slices"]["dice"], test["slices"]["tumour_type"])[
        "spearman_rho"
    ] == pytest.approx(test["spearman_rho"])
    # The per-slice Dice are the published ensemble's, on the same slices.
    published = json.loads((results / "segmentation_test.json").read_text())["models"]["ensemble"]
    assert test["dice_mean"] == pytest.approx(published["dice_mean"], abs=1e-3)
    assert shipped["metrics"]["val"]["dice_mean"] == pytest.approx(val["dice_mean"], abs=1e-3)


@pytest.mark.slow
@pytest.mark.realdata
def test_main_scores_the_bundles_split_and_writes_the_level_it_chose(figshare_dir, tmp_path, capsys):
    """End to end with two tiny bundles on a folder of real 512 px slices: the validation patients of the
    bundles' own split are scored, --write stores the level the rule picks from those slices, and a test
    run reuses the stored level on the test patients."""

    # 30 real slices, dealt to 15 patient groups of 2 slices with 5 groups per tumour type.
    src = figshare_dir / "samples_512"
    stems = sorted(p.stem for p in src.glob("*.png") if not p.stem.endswith("_mask"))[:30]
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    kinds = ("meningioma", "glioma", "pituitary")
    with (data / "cases.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "label", "label_name", "pid", "patient_group"])
        for n, stem in enumerate(stems):
            group = n // 2
            writer.writerow([stem, group % 3 + 1, kinds[group % 3], f"P{group}", f"P{group}"])
            shutil.copy(src / f"{stem}.png", data / "images" / f"{stem}.png")
            shutil.copy(src / f"{stem}_mask.png", data / "masks" / f"{stem}.png")
    split = {"by": "patient_group", "seed": 5, "val_fraction": 0.3, "test_fraction": 0.3}
    models = tmp_path / "models"
    for seed, arch in enumerate(("unet", "attention_unet")):
        keras.utils.set_random_seed(seed)
        spec = ModelSpec(architecture=arch, input_size=32, base_filters=4, depth=3)
        save_bundle(
            spec.build(),
            models,
            f"tiny_{arch}",
            {"spec": spec.get_config(), "threshold": 0.5, "training": {"split": split}},
        )

    argv = ["--data", str(data), "--models-dir", str(models)]
    with pytest.raises(SystemExit, match=r"ensemble\.json is missing"):
        main(argv)
    (models / "ensemble.json").write_text(
        json.dumps({"members": ["tiny_attention_unet", "tiny_unet"], "threshold": 0.5})
    )
    main([*argv, "--split", "val", "--write", "--json", str(tmp_path / "val.json")])
    val = json.loads((tmp_path / "val.json").read_text())
    records = read_records(data)
    assert val["slices"]["id"] == split_ids_as_trained(records, split, "val") != []
    assert val["members"] == ["tiny_attention_unet", "tiny_unet"]
    assert all(0.0 <= a <= 1.0 for a in val["slices"]["agreement"])
    level = choose_flag_below(val["slices"]["agreement"], val["slices"]["dice"])
    stored = json.loads((models / "ensemble.json").read_text())["agreement"]
    assert stored["flag_below"] == level == val["flag"]["flag_below"] and stored["chosen_on"] == "val"
    assert f"wrote agreement.flag_below = {level}" in capsys.readouterr().out

    main([*argv, "--split", "test", "--json", str(tmp_path / "test.json")])
    test = json.loads((tmp_path / "test.json").read_text())
    assert test["slices"]["id"] == split_ids_as_trained(records, split, "test")
    assert not set(test["slices"]["id"]) & set(val["slices"]["id"])
    assert test["flag"] == flag_report(test["slices"]["agreement"], test["slices"]["dice"], level)

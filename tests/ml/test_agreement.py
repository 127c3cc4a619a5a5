"""ml.agreement: members' agreement, and how well a low one flags failed masks; figures by hand."""

import numpy as np
import pytest

from ml.agreement import choose_flag_below, flag_report, main, mask_agreement, study


def _mask(cells, shape=(4, 4)):
    m = np.zeros(shape, bool)
    for r, c in cells:
        m[r, c] = True
    return m


def test_agreement_is_the_mean_pairwise_dice_of_the_member_masks():
    a = _mask([(0, 0), (0, 1), (1, 0), (1, 1)])  # 4 px
    b = _mask([(0, 0), (0, 1)])                  # 2 px, inside a
    c = _mask([(3, 3)])                          # 1 px, apart from both
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
    r = flag_report(agreement, dice, 0.5)   # flagged: slices 0, 1, 4
    assert (r["n"], r["n_failures"], r["n_flagged"]) == (6, 3, 3)
    assert r["sensitivity"] == pytest.approx(2 / 3)   # slices 0 and 4 of 0, 3, 4
    assert r["specificity"] == pytest.approx(2 / 3)   # slices 2 and 5 of 1, 2, 5
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
    import json

    from tests.conftest import REPO_ROOT

    results = REPO_ROOT / "docs" / "results"
    shipped = json.loads((REPO_ROOT / "models" / "ensemble.json").read_text())
    val = json.loads((results / "agreement_val.json").read_text())
    test = json.loads((results / "agreement_test.json").read_text())
    assert val["members"] == test["members"] == sorted(shipped["members"])
    level = choose_flag_below(val["slices"]["agreement"], val["slices"]["dice"])
    assert shipped["agreement"]["flag_below"] == level == val["flag"]["flag_below"] == test["flag"]["flag_below"]
    assert len(val["slices"]["dice"]) == 385 and len(test["slices"]["dice"]) == 406
    assert test["flag"] == flag_report(test["slices"]["agreement"], test["slices"]["dice"], level)
    assert study(test["slices"]["agreement"], test["slices"]["dice"],
                 test["slices"]["tumour_type"])["spearman_rho"] == pytest.approx(test["spearman_rho"])
    # The per-slice Dice are the published ensemble's, on the same slices.
    published = json.loads((results / "segmentation_test.json").read_text())["models"]["ensemble"]
    assert test["dice_mean"] == pytest.approx(published["dice_mean"], abs=1e-3)
    assert shipped["metrics"]["val"]["dice_mean"] == pytest.approx(val["dice_mean"], abs=1e-3)

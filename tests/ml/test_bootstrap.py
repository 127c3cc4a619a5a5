"""The patient-group bootstrap behind evaluate_segmentation's confidence intervals, and its count of
missed slices."""

import numpy as np
import pytest

from ml.evaluate import group_bootstrap_ci, misses


def test_two_groups_give_the_hand_computed_interval():
    # Group a holds two slices scoring 1, group b one slice scoring 0. Drawing two groups with
    # replacement gives aa -> 1, ab or ba -> 2/3, bb -> 0 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles are 0 and 1, and a 40 % interval lies on 2/3.
    values, groups = [1.0, 1.0, 0.0], ["a", "a", "b"]
    assert group_bootstrap_ci(values, groups) == (0.0, 1.0)
    lo, hi = group_bootstrap_ci(values, groups, level=0.4)
    assert lo == pytest.approx(2 / 3) and hi == pytest.approx(2 / 3)


def test_a_constant_score_has_no_spread_and_the_interval_is_seeded():
    assert group_bootstrap_ci([0.7] * 6, list("aabbcc")) == pytest.approx((0.7, 0.7))
    rng = np.random.default_rng(3)
    values, groups = rng.random(60), [f"g{i // 5}" for i in range(60)]
    assert group_bootstrap_ci(values, groups, seed=1) == group_bootstrap_ci(values, groups, seed=1)
    lo, hi = group_bootstrap_ci(values, groups)
    assert lo < values.mean() < hi


def test_resampling_patients_not_slices_widens_the_interval_for_correlated_slices():
    # Ten patients, ten identical slices each: there are ten observations, not a hundred.
    values = np.repeat(np.arange(10) % 2, 10).astype(float)
    by_patient = group_bootstrap_ci(values, [f"p{i // 10}" for i in range(100)])
    by_slice = group_bootstrap_ci(values, [f"s{i}" for i in range(100)])
    assert (by_patient[1] - by_patient[0]) > 2 * (by_slice[1] - by_slice[0])


def test_lengths_must_match():
    with pytest.raises(ValueError, match="3 values but 2 groups"):
        group_bootstrap_ci([1.0, 0.0, 1.0], ["a", "b"])


def test_misses_counts_the_slices_under_the_bar_by_type_and_patient_group():
    dices = [0.0, 0.05, 0.9, 0.8, 0.099, 0.1]
    types = ["glioma", "glioma", "glioma", "meningioma", "pituitary", "pituitary"]
    groups = ["a", "b", "a", "c", "a", "d"]
    assert misses(dices, types, groups) == {
        "below": 0.1,
        "n": 3,
        "of": 6,
        "by_type": {"glioma": 2, "pituitary": 1},
        "patient_groups": 2,
        "dice_mean_of_the_rest": pytest.approx((0.9 + 0.8 + 0.1) / 3),
    }
    assert np.isnan(
        misses([0.5], ["glioma"], ["a"], below=0.6)["dice_mean_of_the_rest"]
    )  # every slice missed
    # How: nothing outlined, an outline that does not touch the tumour, or one that grazes it.
    how = misses(
        dices, types, groups, predicted_px=[0, 40, 500, 300, 12, 80], overlap_px=[0, 0, 450, 280, 1, 70]
    )
    assert how["how"] == {"empty": 1, "elsewhere": 1, "grazing": 1}
    assert "how" not in misses(dices, types, groups)

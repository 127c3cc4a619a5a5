"""The 'like the training slices' check: its level holds on slices the reference was not fitted on."""

import numpy as np

from ml.slice_check import SliceReference


def _folds(n: int, k: int) -> list[np.ndarray]:
    return [np.arange(i, n, k) for i in range(k)]


def test_the_cross_validated_level_is_the_99th_percentile_of_out_of_fold_distances():
    rng = np.random.default_rng(3)
    stats = rng.standard_normal((1000, 14))
    in_sample = SliceReference.fit(stats)
    reference, rates = SliceReference.fit_cross_validated(stats, _folds(len(stats), 5))

    # A reference is closer to what it was fitted on: the out-of-fold level is higher.
    assert reference.flag_above > in_sample.flag_above
    assert len(rates) == 5 and abs(float(np.mean(rates)) - 0.01) < 0.002
    # The served reference is fitted on every slice; only its level comes from the folds.
    np.testing.assert_allclose(reference.mean, in_sample.mean)
    np.testing.assert_allclose(reference.inverse_covariance, in_sample.inverse_covariance)


def test_new_slices_from_the_same_population_are_flagged_about_one_percent_of_the_time():
    rng = np.random.default_rng(4)
    reference, _ = SliceReference.fit_cross_validated(rng.standard_normal((800, 14)), _folds(800, 5))
    fresh = rng.standard_normal((20000, 14))
    rate = float((reference.distances(fresh) > reference.flag_above).mean())
    assert 0.005 < rate < 0.02
    assert reference.distances(np.full((1, 14), 6.0))[0] > reference.flag_above  # far away: flagged

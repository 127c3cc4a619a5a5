"""Calibration judged by cross-validation over fold bundles (``ml.calibrate --nested-folds``): each fold
scored with the settings chosen on the other folds, beside its own in-sample choice."""

import numpy as np

from ml.calibrate import _row_setting, _stacked_tables, calibrate, nested_fold_choice
from ml.data import Record, Slices
from ml.evaluate import _best_setting


def test_each_fold_gets_the_row_best_on_the_other_folds():
    # Rows are settings, columns a fold's slices. Fold 0 alone prefers row 1, but folds 1 and 2 pooled
    # prefer row 0 (mean 0.775 against 0.45), so fold 0 is scored at row 0; fold 1 at row 1 (folds 0 and 2:
    # 0.80 against 0.57); fold 2 at row 0 (folds 0 and 1: 0.68 against 0.60). Pooled, not averaged per fold.
    tables = [
        np.array([[0.5, 0.5], [0.9, 0.9]]),
        np.array([[0.8, 0.8, 0.8], [0.4, 0.4, 0.4]]),
        np.array([[0.7], [0.6]]),
    ]
    assert nested_fold_choice(tables) == [0, 1, 0]
    tables[1] = np.array([[0.1, 0.1, 0.1], [0.4, 0.4, 0.4]])  # now every pair of others prefers row 1
    assert nested_fold_choice(tables) == [1, 1, 1]


class _Views:
    """A predictor whose views differ by zoom and by flip, so that the best flip/zoom candidate, threshold
    and clean-up are not the first ones tried."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.maps: dict = {}

    def view_proba(self, images, *, scale=1.0, tta=False, flip_only=False):
        key = (scale, flip_only)
        if key not in self.maps:
            self.maps[key] = [
                (self.rng.random(img.shape).astype(np.float32), np.ones(img.shape, np.float32))
                for img in images
            ]
        return self.maps[key]


def test_a_row_names_the_settings_calibrate_chooses():
    rng = np.random.default_rng(3)
    size = 24
    masks = [rng.random((size, size)) < 0.3 for _ in range(6)]
    val = Slices(
        [Record(str(i), "glioma", f"P{i}") for i in range(6)],
        [np.zeros((size, size), np.uint8) for _ in range(6)],
        masks,
    )
    predictor = _Views(seed=5)
    _, tables = _stacked_tables(predictor, val)
    table = np.vstack(tables)
    row = _best_setting(table.mean(axis=1))
    assert row != 0  # the test means something only if the best row is not the first
    choice = calibrate(predictor, val)
    setting = _row_setting(row)
    assert setting["threshold"] == choice["threshold"] and setting["tta"] == choice["tta"]
    assert setting["tta_scales"] == choice["tta_scales"]
    assert {k: setting["postprocess"][k] for k in ("keep_largest", "keep_by")} == {
        k: choice["postprocess"][k] for k in ("keep_largest", "keep_by")
    }
    assert np.isclose(table[row].mean(), choice["val_metrics"]["dice_mean"])

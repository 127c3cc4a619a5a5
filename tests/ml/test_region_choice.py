import numpy as np
import pytest

from ml import region_choice
from ml.postprocess import binarize
from ml.region_choice import (
    FEATURES,
    RULES,
    SliceRegions,
    choose,
    cross_validate,
    describe_regions,
    slice_regions,
)


def _head(size=64):
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.45) ** 2, 80, 0).astype(np.uint8)


def _blob(prob, y, x, r, value):
    yy, xx = np.mgrid[: prob.shape[0], : prob.shape[1]]
    prob[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = value


class _Record:
    def __init__(self, i, tumour_type="glioma"):
        self.id, self.patient_group, self.tumour_type = str(i), f"g{i}", tumour_type


def test_regions_are_described_one_row_each_and_small_ones_dropped():
    prob = np.zeros((64, 64), np.float32)
    _blob(prob, 20, 20, 5, 0.9)
    _blob(prob, 40, 44, 3, 0.6)
    prob[60, 2] = 0.9  # one pixel
    labels, features = describe_regions(prob, _head(), 0.5, min_component_px=2)
    assert features.shape == (2, len(FEATURES)) and labels.max() == 2
    f = dict(zip(FEATURES, features.T, strict=True))
    assert f["peak"].tolist() == pytest.approx([0.9, 0.6])
    assert f["peak_rank"].tolist() == [0, 1] and f["n_regions"].tolist() == [2, 2]
    assert f["peak_to_top"][0] == 1.0 and f["area_to_largest"][0] == 1.0


def test_an_empty_map_has_no_region_and_no_choice():
    regions = slice_regions(_Record(0), np.zeros((32, 32)), _head(32), np.ones((32, 32), bool), 0.5)
    assert len(regions.features) == 0
    assert all(choose(rule, regions) is None for rule in ("peak", "area", "oracle"))


def test_the_peak_rule_keeps_the_region_the_served_clean_up_keeps():
    rng = np.random.default_rng(3)
    for _ in range(20):
        prob = np.zeros((64, 64), np.float32)
        for _ in range(rng.integers(1, 5)):
            _blob(prob, *rng.integers(8, 56, 2), rng.integers(2, 7), rng.uniform(0.3, 1.0))
        truth = np.zeros((64, 64), bool)
        labels, _ = describe_regions(prob, _head(), 0.25)
        regions = slice_regions(_Record(0), prob, _head(), truth, 0.25)
        kept = binarize(prob, 0.25, keep_largest=True, keep_by="peak")
        j = choose("peak", regions)
        assert (labels == j + 1).tolist() == kept.tolist()


def test_the_oracle_keeps_the_region_on_the_tumour():
    prob = np.zeros((64, 64), np.float32)
    _blob(prob, 20, 20, 5, 0.95)  # a brighter look-alike
    _blob(prob, 42, 40, 6, 0.7)  # the tumour
    truth = np.zeros((64, 64), bool)
    _blob(truth, 42, 40, 6, True)
    regions = slice_regions(_Record(0), prob, _head(), truth, 0.5)
    assert regions.dice[choose("peak", regions)] == pytest.approx(0.0, abs=1e-6)
    assert regions.dice[choose("oracle", regions)] == pytest.approx(1.0)


def _fold(seed, n=40):
    """Slices where the tumour is the larger, dimmer region and a small bright look-alike is beside it:
    the peak rule always misses, a rule that learns from area does not."""
    rng = np.random.default_rng(seed)
    slices = []
    for i in range(n):
        prob = np.zeros((64, 64), np.float32)
        truth = np.zeros((64, 64), bool)
        y, x = rng.integers(18, 46, 2)
        _blob(prob, y, x, 7, rng.uniform(0.55, 0.7))
        _blob(truth, y, x, 7, True)
        _blob(prob, 8 if y > 32 else 56, 8 if x > 32 else 56, 2, rng.uniform(0.85, 0.99))
        slices.append(slice_regions(_Record(i), prob, _head(), truth, 0.5))
    return slices


def test_cross_validation_trains_on_the_other_folds_and_learns_what_peak_misses():
    folds = {f"fold{k}": _fold(k) for k in range(3)}
    per_fold = cross_validate(folds)
    for figures in per_fold.values():
        assert figures["peak"]["missed"] == figures["peak"]["n"] == 40
        assert figures["oracle"]["missed"] == 0
        assert figures["logistic"]["missed"] == 0 and figures["boosted"]["missed"] == 0
        assert set(figures["logistic_coefficients"]) == set(FEATURES)
    summary = region_choice.summarise_folds(per_fold)
    assert set(summary) == set(RULES)
    assert summary["peak"]["missed"] == 120 and summary["logistic"]["dice_mean"] > 0.95
    # Each bundle's own clean-up, as served, is scored as "own" and leads the summary.
    own = cross_validate(folds, own={"fold0": "area", "fold1": "peak", "fold2": "area"})
    assert own["fold0"]["own"] == {**own["fold0"]["area"], "rule": "area"}
    assert own["fold1"]["own"]["missed"] == 40
    assert next(iter(region_choice.summarise_folds(own))) == "own"


def test_a_learned_rule_sees_only_the_other_folds(monkeypatch):
    seen = []
    real = region_choice.fit_rule

    def spy(rule, slices, **kwargs):
        seen.append((rule, {s.patient_group for s in slices}))
        return real(rule, slices, **kwargs)

    monkeypatch.setattr(region_choice, "fit_rule", spy)
    folds = {"a": _fold(0, 10), "b": _fold(1, 10)}
    for k, slices in folds.items():
        for s in slices:
            s.patient_group = f"{k}-{s.patient_group}"
    cross_validate(folds)
    groups = {k: {s.patient_group for s in v} for k, v in folds.items()}
    assert [g for _, g in seen] == [groups["b"], groups["b"], groups["a"], groups["a"]]


def test_an_unknown_rule_is_named():
    regions = SliceRegions("1", "g", "glioma", np.zeros((1, len(FEATURES))), np.zeros(1))
    with pytest.raises(ValueError, match="unknown rule 'best'"):
        choose("best", regions)
    with pytest.raises(ValueError, match="not a learned rule"):
        region_choice.fit_rule("peak", [regions])


def test_the_command_needs_two_fold_bundles(tmp_path, capsys):
    (tmp_path / "unet_cv0.keras").write_bytes(b"")
    with pytest.raises(SystemExit):
        region_choice.main(["--data", str(tmp_path), "--models-dir", str(tmp_path), "--json", "x.json"])
    assert "at least two fold bundles" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        region_choice.main(
            ["--data", str(tmp_path), "--models-dir", str(tmp_path), "--bundles", "a", "b", "--json", "x"]
        )
    assert "no bundle a, b" in capsys.readouterr().err


def test_an_empty_map_is_scored_by_the_likeliest_region_the_correction_page_would_offer():
    truth = np.zeros((32, 32), bool)
    truth[10:16, 10:16] = True
    faint = np.zeros((32, 32), np.float32)
    faint[10:16, 10:16] = 0.2  # on the tumour, under the threshold
    elsewhere = np.zeros((32, 32), np.float32)
    elsewhere[24:28, 24:28] = 0.3
    slices = [
        slice_regions(_Record(0), faint, _head(32), truth, 0.5),
        slice_regions(_Record(1), elsewhere, _head(32), truth, 0.5),
        slice_regions(_Record(2), np.zeros((32, 32)), _head(32), truth, 0.5),  # nothing to offer
        slice_regions(_Record(3), faint * 3, _head(32), truth, 0.5),  # outlined: not an empty map
    ]
    assert slices[0].likeliest_dice == pytest.approx(1.0) and slices[1].likeliest_dice < 1e-6
    assert slices[2].likeliest_dice is None and slices[3].likeliest_dice is None
    summary = region_choice.empty_maps(slices)
    assert summary == {"n": 3, "offered": 2, "hit": 1, "dice_mean": pytest.approx(0.5)}

import numpy as np
import pytest
from scipy import ndimage

from ml.evaluate import (
    CLEANUPS,
    EARLIER_CANDIDATES,
    THRESHOLDS,
    choose_postprocess,
    cross_validate_choice,
    cross_validate_tables,
)
from ml.postprocess import binarize, likeliest_region, other_regions, postprocess_options, region_peaks


def _two_blobs():
    prob = np.zeros((20, 20), np.float32)
    prob[2:8, 2:8] = 0.9  # 36 px
    prob[15:17, 15:17] = 0.8  # 4 px
    prob[10, 10] = 0.4  # below threshold
    return prob


def test_threshold_only_keeps_every_component():
    assert binarize(_two_blobs(), 0.5).sum() == 40


def test_small_components_are_dropped():
    assert binarize(_two_blobs(), 0.5, min_component_px=5).sum() == 36


def test_keep_largest_keeps_one_component():
    mask = binarize(_two_blobs(), 0.5, keep_largest=True)
    assert mask.sum() == 36 and mask[3, 3] and not mask[15, 15]


def test_choose_postprocess_prefers_keep_largest_when_it_helps():
    truth = _two_blobs() > 0.85
    choice = choose_postprocess([_two_blobs()], [truth])
    assert choice["keep_largest"] is True and choice["val_dice"] > 0.99


def _decoy_and_tumour():
    prob = np.zeros((20, 20), np.float32)
    prob[2:8, 2:8] = 0.9  # 36 px look-alike
    prob[14:18, 14:18] = 0.6  # 16 px tumour...
    prob[15, 15] = 0.97  # ...with a confident core
    return prob


def test_keep_by_peak_keeps_the_most_confident_component_not_the_largest():
    by_area = binarize(_decoy_and_tumour(), 0.5, keep_largest=True)
    by_peak = binarize(_decoy_and_tumour(), 0.5, keep_largest=True, keep_by="peak")
    assert by_area.sum() == 36 and by_area[3, 3]
    assert by_peak.sum() == 16 and by_peak[15, 15] and not by_peak[3, 3]


def test_keep_by_peak_breaks_a_tie_by_area():
    prob = np.zeros((20, 20), np.float32)
    prob[2:4, 2:4] = 1.0  # 4 px at the top probability
    prob[10:16, 10:16] = 1.0  # 36 px at the same probability
    mask = binarize(prob, 0.5, keep_largest=True, keep_by="peak")
    assert mask.sum() == 36


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_region_peaks_are_scipys_maximum_per_label(dtype):
    rng = np.random.default_rng(7)
    prob = ndimage.gaussian_filter(rng.random((96, 96)), 2)
    prob = ((prob - prob.min()) / np.ptp(prob) * (255 if dtype is np.uint8 else 1)).astype(dtype)
    labels, n = ndimage.label(prob > np.quantile(prob, 0.7), structure=np.ones((3, 3), bool))
    assert n > 5
    expected = ndimage.maximum(prob, labels, np.arange(1, n + 1))
    np.testing.assert_array_equal(region_peaks(prob, labels, n), expected)


def test_region_peaks_of_an_empty_label_is_minus_infinity():
    labels = np.zeros((4, 4), np.int32)
    labels[0, 0] = 1
    assert region_peaks(np.full((4, 4), 0.5), labels, 2).tolist() == [0.5, -np.inf]


def test_unknown_keep_by_names_the_choices():

    with pytest.raises(ValueError, match="area, peak"):
        binarize(_two_blobs(), 0.5, keep_largest=True, keep_by="mass")


def test_postprocess_options_reads_old_and_new_metadata():
    assert postprocess_options(None) == {"min_component_px": 0, "keep_largest": False, "keep_by": "area"}
    assert postprocess_options({"keep_largest": True, "min_component_px": 0}) == {
        "min_component_px": 0,
        "keep_largest": True,
        "keep_by": "area",
    }
    assert postprocess_options({"keep_largest": True, "keep_by": "peak"})["keep_by"] == "peak"


def test_choose_postprocess_picks_keep_by_peak_when_only_it_finds_the_tumour():
    truth = np.zeros((20, 20), bool)
    truth[14:18, 14:18] = True
    choice = choose_postprocess([_decoy_and_tumour()], [truth])
    assert (choice["keep_largest"], choice["keep_by"]) == (True, "peak") and choice["val_dice"] > 0.99


def test_cross_validate_choice_scores_each_candidate_set_on_held_out_groups():

    truth = np.zeros((20, 20), bool)
    truth[14:18, 14:18] = True
    probs, truths = [_decoy_and_tumour()] * 10, [truth] * 10
    groups = [f"g{i // 2}" for i in range(10)]  # 5 groups of 2 slices
    candidates = {"current": (THRESHOLDS, CLEANUPS), "earlier": EARLIER_CANDIDATES}
    held_out = cross_validate_choice(probs, truths, groups, candidates, folds=5, repeats=2)
    # Only keep-by-peak below 0.6 finds the tumour alone; the earlier candidates keep the decoy with it
    # at best (Dice 2*16 / (16 + 52)).
    assert held_out["current"] == pytest.approx(1.0)
    assert held_out["earlier"] == pytest.approx(32 / 68, abs=1e-6)
    with pytest.raises(ValueError, match="5 patient groups cannot make 6 folds"):
        cross_validate_choice(probs, truths, groups, candidates, folds=6)


def test_cross_validate_tables_scores_each_fold_with_the_row_chosen_on_the_others():
    # Two groups of one slice each; with two folds, each slice is scored by the row that is best on
    # the other slice. Row 0 is better on "a", row 1 on "b", so each slice gets the other's favourite.
    table = np.array([[0.9, 0.2], [0.4, 0.8]])
    held_out = cross_validate_tables({"t": table, "only row 0": table[:1]}, ["a", "b"], folds=2, repeats=3)
    np.testing.assert_allclose(held_out["t"], [0.4, 0.2])
    np.testing.assert_allclose(held_out["only row 0"], [0.9, 0.2])


def test_other_regions_are_those_the_clean_up_left_out_highest_peak_first():
    prob = _two_blobs()
    prob[2:4, 12:18] = 0.95  # 12 px, the highest peak
    prob[17:19, 2:4] = 0.6  # 4 px
    served = binarize(prob, 0.5, keep_largest=True)  # the 36-px region
    regions = other_regions(prob, served, 0.5)
    assert [(peak, area) for _, peak, area in regions] == [
        (pytest.approx(0.95), 12),
        (pytest.approx(0.8), 4),
        (pytest.approx(0.6), 4),
    ]
    first = regions[0][0]
    assert first.dtype == bool and first[2, 12] and not (first & served).any()
    assert len(other_regions(prob, served, 0.5, limit=2)) == 2
    assert [area for _, _, area in other_regions(prob, served, 0.5, min_component_px=5)] == [12]
    # A region the served mask touches, even by one pixel, is the served one, not another.
    grazed = np.zeros_like(served)
    grazed[3, 13] = True
    assert [area for _, _, area in other_regions(prob, served | grazed, 0.5)] == [4, 4]
    # Nothing above the threshold, or nothing else: no region.
    assert other_regions(prob, served, 0.99) == []
    assert other_regions(_two_blobs(), binarize(_two_blobs(), 0.5), 0.5) == []


def test_the_likeliest_region_is_the_half_peak_blob_around_the_maps_highest_point():
    prob = np.zeros((32, 32), np.float32)
    prob[4:8, 4:8] = 0.30  # the peak's blob: 16 px at or above half the peak
    prob[5, 5] = 0.40
    prob[20:30, 20:30] = 0.25  # larger and above half the peak, but apart from it
    prob[8, 8] = 0.19  # touches the blob diagonally, under half the peak
    region, peak, area = likeliest_region(prob)
    assert peak == pytest.approx(0.40) and area == 16
    assert region[4:8, 4:8].all() and not region[20:30, 20:30].any() and not region[8, 8]
    region, _, area = likeliest_region(prob, fraction=0.45)  # 0.18: the diagonal neighbour joins
    assert area == 17 and region[8, 8]


def test_no_likeliest_region_where_the_map_is_all_but_zero():
    prob = np.full((16, 16), 2 / 255, np.float32)
    assert likeliest_region(prob) is None
    assert likeliest_region(np.zeros((16, 16))) is None
    assert likeliest_region(prob, floor=0.0)[2] == 256  # a flat map is one region
    with pytest.raises(ValueError, match="fraction"):
        likeliest_region(prob, fraction=0.0)

import numpy as np
import pytest

from recommender.features import (
    FEATURE_NAMES,
    N_FEATURES,
    FeatureError,
    describe_agreement,
    extract,
    head_mask,
)
from recommender.services import outline_from_probability


def _head(size=128, lesion_center=(64, 64), lesion_radius=10, lesion_value=230):
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size), np.uint8)
    head = (yy - size / 2) ** 2 / (0.42 * size) ** 2 + (xx - size / 2) ** 2 / (0.36 * size) ** 2 <= 1
    image[head] = 110
    image[head & ((yy + xx) % 7 == 0)] = 125  # some texture
    lesion = (yy - lesion_center[0]) ** 2 + (xx - lesion_center[1]) ** 2 <= lesion_radius**2
    image[lesion] = lesion_value
    return image, lesion


def _f(vector, name):
    return float(vector[FEATURE_NAMES.index(name)])


def test_it_returns_one_finite_value_per_named_feature():
    image, mask = _head()
    v = extract(image, mask)
    assert v.shape == (N_FEATURES,) and v.dtype == np.float32
    assert np.isfinite(v).all()


def test_a_disc_is_round_solid_and_central():
    image, mask = _head()
    v = extract(image, mask)
    assert _f(v, "eccentricity") < 0.2
    assert _f(v, "solidity") > 0.9
    assert 0.7 < _f(v, "extent") < 0.85  # pi/4 for a disc in its box
    assert _f(v, "centroid_radius") < 0.05
    assert _f(v, "contrast_ring") > 1.0  # bright lesion in grey brain


def test_position_features_tell_a_lesion_at_the_skull_from_a_central_one():
    image_c, mask_c = _head()
    image_e, mask_e = _head(lesion_center=(64, 22), lesion_radius=6)
    central, edge = extract(image_c, mask_c), extract(image_e, mask_e)
    assert _f(edge, "depth_min") < _f(central, "depth_min")
    assert _f(edge, "centroid_abs_dx") > 0.5 > _f(central, "centroid_abs_dx")


def test_an_elongated_lesion_is_eccentric():
    image, _ = _head()
    mask = np.zeros_like(image, dtype=bool)
    mask[60:66, 40:90] = True
    assert _f(extract(image, mask), "eccentricity") > 0.95


def test_it_refuses_an_empty_or_mismatched_mask():
    image, mask = _head()
    with pytest.raises(FeatureError, match="empty"):
        extract(image, np.zeros_like(mask))
    with pytest.raises(FeatureError, match="shape"):
        extract(image, mask[:10])


def test_head_mask_covers_the_head_not_the_background():
    image, _ = _head()
    head = head_mask(image)
    assert head[64, 64] and not head[0, 0]


def test_agreement_lists_the_closest_features_first():
    z1 = np.zeros(N_FEATURES)
    z2 = np.full(N_FEATURES, 3.0)
    z2[FEATURE_NAMES.index("solidity")] = 0.1
    assert describe_agreement(z1, z2) == ["solidity (convexity)"]


def test_a_faint_tumour_is_outlined_from_the_probability_map():
    prob = np.zeros((40, 40), np.float32)
    prob[10:20, 10:20] = 0.3  # below the model's threshold: its mask is empty
    prob[30:32, 30:32] = 0.2
    outline = outline_from_probability(prob, prob > 0.5)
    assert outline.sum() == 100 and outline[15, 15]
    kept = np.zeros((40, 40), bool)
    kept[0, 0] = True
    assert outline_from_probability(prob, kept) is kept
    assert not outline_from_probability(np.zeros((4, 4)), np.zeros((4, 4), bool)).any()

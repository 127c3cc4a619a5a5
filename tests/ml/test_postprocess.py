import numpy as np


def _two_blobs():
    prob = np.zeros((20, 20), np.float32)
    prob[2:8, 2:8] = 0.9    # 36 px
    prob[15:17, 15:17] = 0.8  # 4 px
    prob[10, 10] = 0.4      # below threshold
    return prob


def test_threshold_only_keeps_every_component():
    from ml.postprocess import binarize

    assert binarize(_two_blobs(), 0.5).sum() == 40


def test_small_components_are_dropped():
    from ml.postprocess import binarize

    assert binarize(_two_blobs(), 0.5, min_component_px=5).sum() == 36


def test_keep_largest_keeps_one_component():
    from ml.postprocess import binarize

    mask = binarize(_two_blobs(), 0.5, keep_largest=True)
    assert mask.sum() == 36 and mask[3, 3] and not mask[15, 15]


def test_choose_postprocess_prefers_keep_largest_when_it_helps():
    from ml.evaluate import choose_postprocess

    truth = _two_blobs() > 0.85
    choice = choose_postprocess([_two_blobs()], [truth])
    assert choice["keep_largest"] is True and choice["val_dice"] > 0.99
